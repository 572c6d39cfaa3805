//! Dump the forward pass's intermediate tensors, under llama.cpp's names, for a batch of
//! token ids: `cargo run --release --example trace -- MODEL OUTDIR id id …`.
//!
//! Each tensor goes to `OUTDIR/NAME-LAYER.bin` (little-endian f32, `[n_tokens][width]`;
//! `NAME.bin` outside the blocks), the logits of the last position to
//! `OUTDIR/result_output.bin`. With llama.cpp's own tensors for the same ids
//! (`fixtures/reference.sh tensors MODEL DIR NAMES ids…`), `fixtures/compare-tensors.py`
//! shows the first operation where the two differ. This is how the forward pass was
//! made bit-exact; use it when a model's outputs drift from llama.cpp's.

use std::sync::OnceLock;

use tramontane::model::Model;

static DIR: OnceLock<String> = OnceLock::new();

fn probe(name: &str, layer: i32, data: &[f32]) {
    let Some(dir) = DIR.get() else { return };
    let file = if layer >= 0 {
        format!("{dir}/{name}-{layer}.bin")
    } else {
        format!("{dir}/{name}.bin")
    };
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    if let Err(e) = std::fs::write(&file, bytes) {
        eprintln!("trace: {file}: {e}");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: trace MODEL OUTDIR id id …");
        std::process::exit(2);
    }
    let model = Model::open(&args[1])?;
    std::fs::create_dir_all(&args[2])?;
    DIR.set(args[2].clone())
        .map_err(|_| "trace: directory set twice")?;
    let ids: Vec<u32> = args[3..]
        .iter()
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let mut st = model.new_state(ids.len().max(1), 1)?;
    st.set_trace(Some(probe));
    let mut logits = vec![0.0f32; model.config().n_vocab];
    model.eval(&mut st, &ids, &mut logits)?;
    probe("result_output", -1, &logits);
    eprintln!(
        "trace: tensors of {} tokens written to {}",
        ids.len(),
        args[2]
    );
    Ok(())
}
