//! Link the firmware image with `linker.ld` and the resident RTAS runtime with
//! `boot/rtas.ld` (target builds only), and point the firmware at the packed
//! runtime `cargo fw` built first (`PAPR_RTAS_BLOB`).
fn main() {
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rerun-if-changed=boot");
    println!("cargo:rerun-if-env-changed=PAPR_RTAS_BLOB");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("none") {
        return;
    }
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    for a in [
        format!("-T{dir}/linker.ld"),
        "--no-dynamic-linker".into(),
        "-znorelro".into(),
    ] {
        println!("cargo:rustc-link-arg-bin=papr-fw={a}");
    }
    for a in [
        format!("-T{dir}/boot/rtas.ld"),
        "--no-dynamic-linker".into(),
        "-znorelro".into(),
    ] {
        println!("cargo:rustc-link-arg-bin=rtas-runtime={a}");
    }
    let blob = match std::env::var("PAPR_RTAS_BLOB") {
        Ok(p) if !p.is_empty() => {
            println!("cargo:rerun-if-changed={p}");
            p
        }
        _ => {
            // Built without `cargo fw`: no resident runtime (instantiate-rtas
            // then installs the forwarding stub only).
            let out = std::env::var("OUT_DIR").unwrap();
            let p = format!("{out}/no-rtas-runtime.blob");
            std::fs::write(&p, []).unwrap();
            p
        }
    };
    println!("cargo:rustc-env=PAPR_RTAS_BLOB={blob}");
}
