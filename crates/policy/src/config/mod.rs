//! The typed configuration file (SPEC §5) and its whole-file validation.
//!
//! Parsing keeps each section's and each list element's line, so that every
//! problem — syntax, structure or meaning — is reported with where it is.

mod issuers;
mod load;
mod types;
mod validate;

pub use issuers::warnings;
pub use load::{ConfigProblem, Located, parse};
pub use types::*;
