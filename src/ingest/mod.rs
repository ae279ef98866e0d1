//! Ingestion: load → clean → screen (quality, duplicates) → chunk → store →
//! embed → index.

pub mod chunk;
pub mod clean;
pub mod dedup;
pub mod formats;
pub mod load;
pub mod pipeline;
pub mod quality;
pub mod screen;
pub mod upload;
