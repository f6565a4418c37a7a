//! `cargo fw`: build the firmware image; the last line printed is the absolute
//! path of `papr-fw.bin`.
fn main() {
    match qemu_tests::image::build() {
        Ok(b) => {
            eprintln!(
                "papr-fw: image {} bytes ({:.1}% of QEMU's 4 MiB), footprint to {:#x}; ELF with symbols: {}",
                b.image_size,
                b.image_size as f64 * 100.0 / qemu_tests::image::QEMU_LIMIT as f64,
                b.footprint,
                b.elf.display()
            );
            println!("{}", b.bin.display());
        }
        Err(e) => {
            eprintln!("papr-fw: {e}");
            std::process::exit(1);
        }
    }
}
