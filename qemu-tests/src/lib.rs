//! Host-side harness for papr-fw: where things live ([`paths`]), building the
//! flat firmware image ([`image`]), and running QEMU with console expectations
//! ([`qemu`]).

pub mod image;
pub mod paths;
pub mod qemu;
