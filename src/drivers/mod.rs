//! Device drivers of the firmware: the PCI devices it talks to itself, each
//! through [`crate::mmio::Mmio`] for registers and the TCE API
//! ([`crate::tce::TceManager`]) for DMA.

pub mod block;
pub mod dma_selftest;
pub mod nvme;
pub mod virtio;
pub mod virtio_blk;
pub mod virtio_scsi;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod virtio_tests;
