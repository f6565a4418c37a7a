//! Host-side harness for papr-fw: where things live ([`paths`]), building the
//! flat firmware image ([`image`]), running QEMU with console expectations
//! ([`qemu`]), real Linux guests from Debian packages ([`guest`]), comparing
//! the trees guests received ([`fdt_diff`]) and the boot benchmark ([`bench`]).

pub mod bench;
pub mod conformance;
pub mod fdt_diff;
pub mod guest;
pub mod image;
pub mod paths;
pub mod qemu;
