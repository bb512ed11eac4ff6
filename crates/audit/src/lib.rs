//! The audit model: what an event is, how it is encoded canonically, how events
//! are chained by hash, and how a stored chain is verified.
//!
//! Pure: this crate owns no I/O. Storage lives in `taskgate-store`, which hands
//! rows to [`verify`] and asks [`Chain::seal`] to seal new events.
#![forbid(unsafe_code)]

mod canonical;
mod chain;
mod checkpoint;
pub mod display;
mod event;
mod export;
mod facts;
mod identity;
mod story;
mod timestamp;
mod verdict;
mod verify;

pub use canonical::{CanonicalError, canonical_json};
pub use chain::{Chain, ChainHead, EventColumns, GENESIS_HASH, Hash, PreparedEvent, SealedEvent};
pub use checkpoint::{Checkpoint, CheckpointError, CheckpointKey, KeyError, PublicKey};
pub use event::{Event, EventDraft, EventType, SCHEMA_VERSION};
pub use export::exported;
pub use facts::{ANY_TABLE, EventFacts, TableUse, table_query_names, table_search_names};
pub use identity::{Identity, IdentityKind};
pub use story::{Decision, Entry, Story, What};
pub use timestamp::{Timestamp, TimestampError};
pub use verdict::{HoldVerdict, StatementVerdict, Verdict};
pub use verify::{EventRow, EventRowRef, Problem, ProblemKind, Verifier, VerifyReport};
