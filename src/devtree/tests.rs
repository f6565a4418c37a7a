//! Host tests over QEMU's real trees.
