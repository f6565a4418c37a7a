//! Device drivers of the firmware: the PCI devices it talks to itself, each
//! through [`crate::mmio::Mmio`] for registers and the TCE API
//! ([`crate::tce::TceManager`]) for DMA.

pub mod dma_selftest;
pub mod nvme;

#[cfg(test)]
mod tests;
