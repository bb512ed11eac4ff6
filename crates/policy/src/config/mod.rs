//! The typed configuration file (SPEC §5) and its whole-file validation.
//!
//! Parsing keeps each section's and each list element's line, so that every
//! problem — syntax, structure or meaning — is reported with where it is.

mod load;
mod types;
mod validate;

pub use load::{ConfigProblem, Located, parse};
pub use types::*;
