//! ragchat: turn a pile of documents into a knowledge base to search and chat with.

pub mod app;
pub mod auth;
pub mod chat;
pub mod config;
pub mod crawl;
pub mod db;
pub mod embed;
pub mod error;
pub mod eval;
pub mod http;
pub mod ids;
pub mod index;
pub mod ingest;
pub mod jobs;
pub mod llm;
pub mod metrics;
pub mod ratelimit;
pub mod retrieve;
pub mod telemetry;

pub use error::{Error, Result};
