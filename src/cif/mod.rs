//! The IEEE 1275 client interface (IEEE 1275-1994 §6.3; PowerPC binding;
//! Linux prom_init's use in linux-expectations.md §1).

pub mod cas;
pub mod claim;
