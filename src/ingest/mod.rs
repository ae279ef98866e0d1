//! Ingestion: load → clean → chunk → store → embed → index.

pub mod chunk;
pub mod clean;
pub mod formats;
pub mod load;
pub mod pipeline;
