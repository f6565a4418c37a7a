//! Link the conformance client with `link.ld` (target builds only).
fn main() {
    println!("cargo:rerun-if-changed=link.ld");
    println!("cargo:rerun-if-changed=src/entry.S");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("none") {
        return;
    }
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    for a in [
        format!("-T{dir}/link.ld"),
        "--no-dynamic-linker".into(),
        "-znorelro".into(),
    ] {
        println!("cargo:rustc-link-arg-bin=conformance={a}");
    }
}
