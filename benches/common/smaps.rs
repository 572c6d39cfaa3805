//! The lines `/proc/self/smaps` gives for this process's maps of one file (no llama.cpp
//! in here: shared by the benches' `common` and by `tests/model_smoke.rs`, which
//! includes it with `#[path]`).

use std::path::Path;

/// The field lines (`Rss:`, `FilePmdMapped:`, `VmFlags:`, …) of every map of `path`, in
/// order; `None` where `/proc/self/smaps` cannot be read or `path` is not UTF-8.
pub fn map_fields(path: &Path) -> Option<Vec<String>> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let name = path.to_str()?;
    let mut in_map = false;
    let mut out = Vec::new();
    for line in smaps.lines() {
        // A map's header starts with its address range, `start-end` in hex.
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            in_map = line.ends_with(name);
        } else if in_map {
            out.push(line.to_string());
        }
    }
    Some(out)
}
