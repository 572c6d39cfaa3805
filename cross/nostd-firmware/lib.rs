//! The firmware of `examples/embedded/firmware.rs` without `std`: a static library a
//! board's C startup code links and calls (`firmware_main`), with a panic handler, a
//! 256 KiB bump-allocated heap as the global allocator, and the text written through
//! the board's `board_write` (which the board support package provides).
//!
//! Built by `cross/check-nostd.sh` for `thumbv7em-none-eabihf` (Cortex-M4F/M7) and
//! `aarch64-unknown-none`; nothing runs there, this proves that the firmware code and
//! the library's core build and link with `core` and `alloc` only.

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

#[path = "../../examples/embedded/firmware.rs"]
mod firmware;

use core::panic::PanicInfo;

use firmware::{Bump, FirmwareError, Output, MODEL};

/// The heap: the model's tables, the session and the generation (the memory plan of
/// this model and these options is 65 KB; the model's tables about 30 KB).
const HEAP_BYTES: usize = 256 * 1024;

#[global_allocator]
static HEAP: Bump<HEAP_BYTES> = Bump::new();

extern "C" {
    /// Provided by the board: write `len` bytes from `text` (a UART, a log buffer).
    fn board_write(text: *const u8, len: usize);
}

fn write(s: &str) {
    // SAFETY: `board_write` reads `len` bytes from `text` during the call only, and `s`
    // is valid for that long.
    unsafe { board_write(s.as_ptr(), s.len()) }
}

/// Generate from a fixed prompt and write the text out. Returns the number of tokens
/// generated, -1 if the model or the generation failed, -2 if the heap is too small.
#[no_mangle]
pub extern "C" fn firmware_main() -> i32 {
    let mut out = Output::new();
    match firmware::generate(
        MODEL,
        "The engine temperature is",
        || Some(HEAP.free()),
        &mut out,
    ) {
        Ok(()) => {
            write(out.text());
            i32::try_from(out.n_tokens).unwrap_or(i32::MAX)
        }
        Err(FirmwareError::Model(_)) => -1,
        Err(FirmwareError::HeapTooSmall { .. }) => -2,
    }
}

#[panic_handler]
fn panic(_info: &PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
