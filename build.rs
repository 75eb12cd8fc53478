//! Tells the code whether the compiler has what it needs for optional
//! speed-ups, so that older compilers (down to `rust-version`) still build
//! swarmfs, without them.

use std::process::Command;

fn main() {
    println!("cargo:rustc-check-cfg=cfg(avx512_intrinsics)");
    println!("cargo:rerun-if-env-changed=RUSTC");
    // AVX-512 intrinsics (for `storage::batch_sha1`) are stable from 1.89.
    if rustc_minor().is_some_and(|minor| minor >= 89) {
        println!("cargo:rustc-cfg=avx512_intrinsics");
    }
}

/// The minor version of the compiler cargo uses ("rustc 1.89.0 ..." is 89).
fn rustc_minor() -> Option<u32> {
    let rustc = std::env::var_os("RUSTC")?;
    let out = Command::new(rustc).arg("--version").output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let version = text.split_whitespace().nth(1)?;
    let mut parts = version.split('.');
    (parts.next()? == "1").then_some(())?;
    parts.next()?.parse().ok()
}
