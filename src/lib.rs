//! ragchat: turn a pile of documents into a knowledge base to search and chat with.
// Outside tests, a failed unwrap on input or I/O would take a request (or a
// worker) down; errors are returned instead.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod app;
pub mod auth;
pub mod cache;
pub mod chat;
pub mod cli;
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
pub mod redis_conn;
pub mod retrieve;
pub mod startup;
pub mod telemetry;
pub mod text;

pub use error::{Error, Result};
