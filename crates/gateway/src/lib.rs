//! Taskgate's I/O edge: the HTTP API, identity providers, the expiry
//! scheduler, and the server that ties them to the store. Decisions are made
//! in `taskgate-policy`; records are written by `taskgate-store`.
#![forbid(unsafe_code)]

pub mod api;
pub mod audit_search;
pub mod checkpoints;
mod console;
pub mod expiry;
pub mod fleet;
pub mod identity;
mod indexer;
pub mod mcp;
pub mod metrics;
pub mod pg;
pub mod secrets;
mod server;
pub mod sinks;
pub mod storage;
pub mod token;

pub use server::{Gateway, GatewayError};
