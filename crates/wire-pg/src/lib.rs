//! PostgreSQL v3 wire protocol, as far as Taskgate needs it.
//!
//! The gateway forwards the original bytes of every message unchanged; this
//! crate only cuts the byte stream into frames (type byte + length, with a
//! named size cap per message type) and decodes the fields of the messages
//! that policy and audit look at. It also encodes the few messages the
//! gateway writes itself, and holds the server side of SCRAM-SHA-256.
//!
//! Hand-written rather than taken from `pgwire` or `postgres-protocol`:
//! both decode into owned structures and re-encode, where a proxy wants
//! zero-copy views over bytes it will forward as they came, and neither
//! enforces per-type size caps before buffering a message.
//!
//! Nothing here does I/O, so every decoder can be fuzzed (see `fuzz/`).

pub mod backend;
pub mod encode;
pub mod encoding;
pub mod frame;
pub mod frontend;
mod read;
pub mod scram;
pub mod startup;

pub use frame::{Direction, Frame, FrameError, Limits};
