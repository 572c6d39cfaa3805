//! The firmware path on the host: the code of `examples/embedded/firmware.rs` (no
//! `std`: a model in flash, a fixed context, one thread, a fixed-size output buffer, no
//! file system), with its bump allocator as the global allocator, as on a
//! microcontroller. Only printing the result uses `std`.
//!
//!     cargo run --release --example embedded ["PROMPT"]
//!
//! The same code is built without `std` for `thumbv7em-none-eabihf` and
//! `aarch64-unknown-none` by `cross/check-nostd.sh` (`cross/nostd-firmware/`), and its
//! tokens are checked against the std `Session` API by `tests/embedded.rs`.

#[path = "embedded/firmware.rs"]
mod firmware;

use firmware::{Bump, Output, MODEL};

/// The heap: 2 MiB, for the model's tables (tokenizer, norms), the session and the
/// generation, and what `std` allocates for this host process and its printing.
const HEAP_BYTES: usize = 2 << 20;

#[global_allocator]
static HEAP: Bump<HEAP_BYTES> = Bump::new();

fn main() {
    let prompt = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "The engine temperature is".to_string());
    let mut out = Output::new();
    let before = HEAP.used();
    match firmware::generate(MODEL, &prompt, || Some(HEAP.free()), &mut out) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("embedded: {e:?}");
            std::process::exit(1);
        }
    }
    let p = out.plan;
    println!("{prompt}{}", out.text());
    println!(
        "tokens: {:?}{}",
        out.tokens(),
        if out.truncated {
            " (text truncated)"
        } else {
            ""
        }
    );
    println!("stop: {:?}", out.stop);
    println!(
        "memory plan: {} B (KV cache {}, scratch {}, logits {}, tokens {}, sampler {}, stream {})",
        p.total, p.kv_cache, p.scratch, p.logits, p.tokens, p.sampler, p.stream
    );
    println!(
        "heap: {} B used at the peak by the model, session and generation, of {HEAP_BYTES} B",
        HEAP.peak() - before
    );
}

/// Run by `cargo test --examples` (and `--all-targets`): the firmware generates its
/// tokens inside the fixed heap, and the heap it used covers the memory plan.
#[test]
fn generates_inside_the_fixed_heap() {
    let mut out = Output::new();
    let before = HEAP.used();
    firmware::generate(MODEL, "The engine", || Some(HEAP.free()), &mut out)
        .expect("the firmware generates");
    assert_eq!(out.n_tokens, firmware::MAX_TOKENS);
    assert!(HEAP.peak() - before >= out.plan.total);
    assert!(out.plan.total < HEAP_BYTES / 4, "{:?}", out.plan);
}
