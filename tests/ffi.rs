//! The C ABI end to end (src/ffi/, include/tramontane.h, examples/c/, tests/c/):
//!
//! - `include/tramontane.h` is exactly what cbindgen generates now (`scripts/gen-header.sh`);
//! - the C libraries build (`scripts/build-c-lib.sh`), and C programs link them with
//!   `cc … -ltramontane`, with pkg-config (shared and static) and with CMake
//!   (`find_package(Tramontane)`, config and module mode);
//! - `examples/c/generate.c`'s greedy output equals the Rust API's, on Gemma 3 270M and
//!   on a synthetic model;
//! - `tests/c/robust.c` (NULL arguments, bad files, END after END, cancellation from a
//!   second thread, 1-byte buffers, callbacks, saved states, logits) passes on every
//!   synthetic model;
//! - valgrind memcheck runs the C programs clean (`--leak-check=full`, every leak kind
//!   but "still reachable" an error, no suppressions), and fails a control program that
//!   leaks its session.
//!
//! Needs a C compiler (`cc`) and pkg-config; cmake for the CMake builds (skipped with a
//! message without it). Environment: `TRAMONTANE_SKIP_C=1` skips these tests. A missing
//! cbindgen or valgrind skips its test with a message, unless
//! `TRAMONTANE_REQUIRE_CBINDGEN=1` / `TRAMONTANE_REQUIRE_VALGRIND=1`; run-tests.sh installs
//! whichever is missing and then runs those two tests with both set.
//! `TRAMONTANE_SKIP_REAL_MODELS=1` skips the Gemma comparison. Test binaries
//! cross-compiled for another architecture (cross/, under qemu) skip these tests.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Instant;

use tramontane::{GenerateOptions, Model, SamplerChain, SessionOptions};

const PROMPT: &str = "The capital of France is";
const SYNTH_MODEL: &str = "llama-gqa-f16";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Cargo's target directory (the one this test was built in).
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map_or_else(|| root().join("target"), Path::to_path_buf)
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn env_is(name: &str, value: &str) -> bool {
    std::env::var(name).as_deref() == Ok(value)
}

/// Why the C tests cannot run here, if so.
fn skip_reason() -> Option<String> {
    if env_is("TRAMONTANE_SKIP_C", "1") {
        return Some("TRAMONTANE_SKIP_C=1".into());
    }
    // A cross-compiled test binary (run under qemu by cross/): the host's cargo and cc
    // would build and run host programs, which the host test run already does.
    let host = Command::new("rustc")
        .arg("-vV")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        });
    match host {
        Some(h) if !h.starts_with(std::env::consts::ARCH) => Some(format!(
            "this test binary is {}, the host toolchain builds {h}",
            std::env::consts::ARCH
        )),
        _ => None,
    }
}

macro_rules! skip_unless_c {
    () => {
        if let Some(why) = skip_reason() {
            eprintln!("skipping the C ABI tests: {why}");
            return;
        }
    };
}

/// A tool a test needs: `None` (skip, with a message) when it is missing and not
/// required; a panic with how to install it when it is required.
fn optional_tool(tool: &str, require_var: &str, install: &str) -> Option<()> {
    if have(tool) {
        return Some(());
    }
    if env_is(require_var, "1") {
        panic!("{tool} not found and {require_var}=1: install it ({install})");
    }
    eprintln!("skipping: {tool} not found (install it: {install}; run-tests.sh does)");
    None
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Run a command to completion (without the test's LD_LIBRARY_PATH, so that programs
/// find libtramontane.so through their rpath as a user's would).
fn run(cmd: &mut Command) -> Output {
    cmd.env_remove("LD_LIBRARY_PATH");
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn run_ok(cmd: &mut Command) -> Output {
    let o = run(cmd);
    assert!(o.status.success(), "{cmd:?} failed: {}", show(&o));
    o
}

/// The C libraries, header, pkg-config and CMake files, installed into a prefix.
struct CLib {
    prefix: PathBuf,
    bin: PathBuf,
}

impl CLib {
    fn lib(&self) -> PathBuf {
        self.prefix.join("lib")
    }
    fn pkg_config(&self) -> Command {
        let mut c = Command::new("pkg-config");
        c.env("PKG_CONFIG_PATH", self.lib().join("pkgconfig"));
        c
    }
}

fn clib() -> &'static CLib {
    static LIB: OnceLock<Result<CLib, String>> = OnceLock::new();
    let lib = LIB.get_or_init(|| {
        let t0 = Instant::now();
        let target = target_dir();
        let prefix = target.join("ffi-c");
        let bin = prefix.join("bin");
        let o = Command::new(root().join("scripts/build-c-lib.sh"))
            .arg("--prefix")
            .arg(&prefix)
            .env("CARGO_TARGET_DIR", &target)
            .env(
                "CARGO",
                std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()),
            )
            .output()
            .map_err(|e| format!("cannot run scripts/build-c-lib.sh: {e}"))?;
        if !o.status.success() {
            return Err(format!("scripts/build-c-lib.sh failed: {}", show(&o)));
        }
        std::fs::create_dir_all(&bin).map_err(|e| format!("{}: {e}", bin.display()))?;
        eprintln!(
            "C libraries built and installed into {} in {:.1} s",
            prefix.display(),
            t0.elapsed().as_secs_f64()
        );
        Ok(CLib { prefix, bin })
    });
    lib.as_ref().unwrap_or_else(|e| panic!("{e}"))
}

/// How a C program is linked.
#[derive(Clone, Copy, Debug)]
enum Link {
    /// `-L<prefix>/lib -ltramontane` and an rpath: the shared library.
    Shared,
    /// `pkg-config --cflags --libs <name>`.
    PkgConfig(&'static str),
}

/// Compile `src` (relative to the repository) into `<prefix>/bin/<name>`.
fn cc(name: &str, src: &str, std: &str, link: Link) -> PathBuf {
    let lib = clib();
    let exe = lib.bin.join(name);
    let mut c = Command::new("cc");
    c.arg(format!("-std={std}"))
        .args(["-Wall", "-Wextra", "-Werror", "-O1", "-g"])
        .arg(root().join(src))
        .arg("-o")
        .arg(&exe);
    match link {
        Link::Shared => {
            c.arg(format!("-I{}", lib.prefix.join("include").display()))
                .arg(format!("-L{}", lib.lib().display()))
                .arg("-ltramontane")
                .arg(format!("-Wl,-rpath,{}", lib.lib().display()));
        }
        Link::PkgConfig(pc) => {
            let o = run_ok(lib.pkg_config().args(["--cflags", "--libs", pc]));
            let flags = String::from_utf8_lossy(&o.stdout).into_owned();
            c.args(flags.split_whitespace());
        }
    }
    c.arg("-pthread");
    run_ok(&mut c);
    exe
}

/// The greedy completion of `prompt` through the Rust API, as generate.c asks for it.
fn rust_greedy(model: &Model, prompt: &str, max_tokens: usize) -> String {
    let mut s = model
        .session(SessionOptions {
            context_len: 2048,
            ..Default::default()
        })
        .expect("session");
    s.complete(
        prompt,
        GenerateOptions::default()
            .max_tokens(max_tokens)
            .sampler(SamplerChain::greedy()),
    )
    .expect("complete")
    .text
}

fn synth_path() -> PathBuf {
    common::synth_path(SYNTH_MODEL)
}

fn generate_cmd(exe: &Path, model: &Path, max_tokens: usize, extra: &[&str]) -> Command {
    let mut c = Command::new(exe);
    c.arg(model)
        .arg(PROMPT)
        .args(["-n", &max_tokens.to_string(), "-t", "0"])
        .args(extra);
    c
}

fn valgrind(program: &Path) -> Command {
    let mut c = Command::new("valgrind");
    c.args([
        "-q",
        "--error-exitcode=99",
        "--leak-check=full",
        "--show-leak-kinds=definite,indirect,possible",
        "--errors-for-leak-kinds=definite,indirect,possible",
    ])
    .arg(program);
    c
}

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

#[test]
fn header_is_what_cbindgen_generates() {
    skip_unless_c!();
    if optional_tool(
        "cbindgen",
        "TRAMONTANE_REQUIRE_CBINDGEN",
        "cargo install --locked cbindgen --version 0.29.4",
    )
    .is_none()
    {
        return;
    }
    let fresh = scratch("ffi-header").join("tramontane.h");
    run_ok(Command::new(root().join("scripts/gen-header.sh")).arg(&fresh));
    let want = std::fs::read_to_string(&fresh).expect("generated header");
    let have =
        std::fs::read_to_string(root().join("include/tramontane.h")).expect("include/tramontane.h");
    if want != have {
        let version = run(Command::new("cbindgen").arg("--version"));
        panic!(
            "include/tramontane.h is stale: run scripts/gen-header.sh and commit it \
             (fresh header: {}; {} — the checked-in one was made with cbindgen 0.29.4)",
            fresh.display(),
            String::from_utf8_lossy(&version.stdout).trim()
        );
    }
}

#[test]
fn robust_c_tests_pass_on_every_synthetic_model() {
    skip_unless_c!();
    let t0 = Instant::now();
    let exe = cc(
        "robust",
        "tests/c/robust.c",
        "gnu11",
        Link::PkgConfig("tramontane-static"),
    );
    let dir = scratch("ffi-robust");
    for name in common::SYNTH {
        let o = run(Command::new(&exe).arg(common::synth_path(name)).arg(&dir));
        assert!(o.status.success(), "robust.c on {name}: {}", show(&o));
        eprintln!("{name}: {}", String::from_utf8_lossy(&o.stdout).trim());
    }
    // Linked against the shared library too.
    let shared = cc("robust-shared", "tests/c/robust.c", "gnu11", Link::Shared);
    run_ok(Command::new(&shared).arg(synth_path()).arg(&dir));
    eprintln!(
        "robust.c: {} models + shared build in {:.1} s",
        common::SYNTH.len(),
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn c_programs_are_clean_under_valgrind() {
    skip_unless_c!();
    if optional_tool(
        "valgrind",
        "TRAMONTANE_REQUIRE_VALGRIND",
        "apt-get install -y valgrind",
    )
    .is_none()
    {
        return;
    }
    let t0 = Instant::now();
    let dir = scratch("ffi-valgrind");
    // robust.c: every API call, errors, threads (cancellation, a 2-thread pool).
    let robust = cc(
        "robust-vg",
        "tests/c/robust.c",
        "gnu11",
        Link::PkgConfig("tramontane-static"),
    );
    let o = run(valgrind(&robust).arg(synth_path()).arg(&dir));
    assert!(
        o.status.success(),
        "robust.c under valgrind (99: memcheck errors): {}",
        show(&o)
    );
    eprintln!(
        "valgrind robust.c: clean ({:.1} s)",
        t0.elapsed().as_secs_f64()
    );

    // generate.c through the shared library: the output is still the Rust API's.
    let t1 = Instant::now();
    let generate = cc("generate-vg", "examples/c/generate.c", "c99", Link::Shared);
    let o = run(&mut {
        let mut c = valgrind(&generate);
        c.arg(synth_path())
            .arg(PROMPT)
            .args(["-n", "16", "-t", "0", "-j", "2"]);
        c
    });
    assert!(
        o.status.success(),
        "generate.c under valgrind: {}",
        show(&o)
    );
    let model = common::synth(SYNTH_MODEL);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("{}\n", rust_greedy(&model, PROMPT, 16))
    );
    // Its error path (a missing model) is clean too.
    let o = run(valgrind(&generate).arg(dir.join("missing.gguf")).arg("x"));
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    eprintln!(
        "valgrind generate.c: clean ({:.1} s)",
        t1.elapsed().as_secs_f64()
    );

    // No allocation per token through the C API either: the same number of heap blocks
    // for 8 and for 40 generated tokens (greedy and sampled).
    for temp in ["0", "0.8"] {
        let allocs = |n: &str| {
            let o = run(Command::new("valgrind")
                .arg(&generate)
                .arg(synth_path())
                .arg(PROMPT)
                .args(["-n", n, "-t", temp, "-c", "256"]));
            assert!(o.status.success(), "{}", show(&o));
            let err = String::from_utf8_lossy(&o.stderr).into_owned();
            let line = err
                .lines()
                .find_map(|l| l.split("total heap usage: ").nth(1))
                .unwrap_or_else(|| panic!("no heap summary: {err}"))
                .to_string();
            line.split_whitespace().next().unwrap_or("").to_string()
        };
        let (few, many) = (allocs("8"), allocs("40"));
        assert_eq!(
            few, many,
            "heap allocations grow with the tokens (temperature {temp})"
        );
        eprintln!("valgrind: {few} heap blocks for 8 and for 40 tokens (temperature {temp})");
    }

    // The control: a session that is never freed must be reported.
    let leak = cc("leak", "tests/c/leak.c", "c99", Link::Shared);
    let o = run(valgrind(&leak).arg(synth_path()));
    assert_eq!(
        o.status.code(),
        Some(99),
        "valgrind must flag the leaked session: {}",
        show(&o)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("definitely lost"));
}

#[test]
fn generate_c_matches_the_rust_api_on_gemma() {
    skip_unless_c!();
    let Some(path) = common::real_model(common::GEMMA) else {
        return;
    };
    let t0 = Instant::now();
    let n = 32;
    let model = Model::open(&path).expect("gemma");
    let want = format!("{}\n", rust_greedy(&model, PROMPT, n));
    let shared = cc("generate", "examples/c/generate.c", "c99", Link::Shared);
    let fixed = cc(
        "generate-static",
        "examples/c/generate.c",
        "c99",
        Link::PkgConfig("tramontane-static"),
    );
    for (exe, extra) in [(&shared, &[][..]), (&fixed, &["-j", "2"][..])] {
        let o = run_ok(&mut generate_cmd(exe, &path, n, extra));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            want,
            "{} {extra:?}",
            exe.display()
        );
    }
    eprintln!(
        "generate.c = Rust API on {} ({n} greedy tokens): {:?} ({:.1} s)",
        common::GEMMA,
        want.trim_end(),
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn generate_c_reports_errors_with_tra_last_error() {
    skip_unless_c!();
    let exe = cc("generate-err", "examples/c/generate.c", "c99", Link::Shared);
    let dir = scratch("ffi-errors");
    let junk = dir.join("junk.gguf");
    std::fs::write(&junk, "not a gguf file").expect("write");
    let cases: [(PathBuf, &str); 2] = [
        (dir.join("missing.gguf"), "tra_model_open: cannot read"),
        (junk, "tra_model_open: gguf: not a GGUF file"),
    ];
    for (path, msg) in cases {
        let o = run(Command::new(&exe).arg(&path).arg("x"));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{}", show(&o));
        assert!(err.starts_with("generate: ") && err.contains(msg), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let o = run(Command::new(&exe).arg(synth_path()));
    assert_eq!(o.status.code(), Some(2), "usage: {}", show(&o));
}

#[test]
fn pkg_config_and_cmake_link_in_two_lines() {
    skip_unless_c!();
    let t0 = Instant::now();
    let lib = clib();
    let model = common::synth(SYNTH_MODEL);
    let want = format!("{}\n", rust_greedy(&model, PROMPT, 12));
    let check = |exe: &Path, how: &str| {
        let o = run_ok(&mut generate_cmd(exe, &synth_path(), 12, &[]));
        assert_eq!(String::from_utf8_lossy(&o.stdout), want, "{how}");
    };
    // pkg-config, shared and static.
    check(
        &cc(
            "generate-pc",
            "examples/c/generate.c",
            "c99",
            Link::PkgConfig("tramontane"),
        ),
        "pkg-config tramontane",
    );
    check(
        &cc(
            "generate-pc-static",
            "examples/c/generate.c",
            "c99",
            Link::PkgConfig("tramontane-static"),
        ),
        "pkg-config tramontane-static",
    );
    let o = run_ok(lib.pkg_config().args(["--modversion", "tramontane"]));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        env!("CARGO_PKG_VERSION")
    );

    if !have("cmake") {
        assert!(
            !env_is("TRAMONTANE_REQUIRE_CMAKE", "1"),
            "cmake not found (apt-get install -y cmake)"
        );
        eprintln!("skipping the CMake builds: cmake not found (apt-get install -y cmake)");
        return;
    }
    // examples/c/CMakeLists.txt: find_package(Tramontane) + target_link_libraries.
    let variants: [(&str, Vec<String>); 2] = [
        (
            "config package, static",
            vec![
                format!("-DCMAKE_PREFIX_PATH={}", lib.prefix.display()),
                "-DTramontane_USE_STATIC=ON".into(),
            ],
        ),
        (
            "FindTramontane.cmake module, shared",
            vec![
                format!(
                    "-DCMAKE_MODULE_PATH={}",
                    root().join("packaging/cmake").display()
                ),
                format!("-DTramontane_ROOT={}", lib.prefix.display()),
            ],
        ),
    ];
    for (i, (how, args)) in variants.iter().enumerate() {
        let build = lib.bin.join(format!("cmake-{i}"));
        let _ = std::fs::remove_dir_all(&build);
        run_ok(
            Command::new("cmake")
                .arg("-S")
                .arg(root().join("examples/c"))
                .arg("-B")
                .arg(&build)
                .args(args),
        );
        run_ok(Command::new("cmake").arg("--build").arg(&build));
        check(&build.join("generate"), how);
        if how.contains("shared") {
            let o = run_ok(Command::new("ldd").arg(build.join("generate")));
            assert!(
                String::from_utf8_lossy(&o.stdout).contains("libtramontane.so"),
                "{how}: not linked to the shared library"
            );
        }
    }
    eprintln!(
        "pkg-config and CMake builds: ok ({:.1} s)",
        t0.elapsed().as_secs_f64()
    );
}
