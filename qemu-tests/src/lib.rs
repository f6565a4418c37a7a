//! Host-side harness for papr-fw.
