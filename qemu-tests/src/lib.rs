//! Host-side harness for papr-fw: where things live ([`paths`]), building the
//! flat firmware image ([`image`]), running QEMU with console expectations
//! ([`qemu`]), and real Linux guests from Debian packages ([`guest`]).

pub mod guest;
pub mod image;
pub mod paths;
pub mod qemu;
