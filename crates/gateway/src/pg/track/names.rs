//! The session's prepared statements and portals, by name, kept in step
//! with the server's (see [`Names`]).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use taskgate_sqlclass::Classification;

/// A prepared statement as the gateway knows it.
#[derive(Debug)]
pub struct Prepared {
    pub sql: Arc<str>,
    pub class: Arc<Classification>,
    /// The review that let it run, when it was held.
    pub review: Option<Arc<str>>,
}

/// A portal: the statement it was bound to and the parameters.
#[derive(Debug)]
pub struct Portal {
    pub statement: String,
    pub prepared: Arc<Prepared>,
    pub params: Vec<Value>,
}

/// A change to the name tables, applied when the client's message is
/// forwarded and undone if the server refuses or skips that message.
#[derive(Debug)]
pub enum Change {
    Statement {
        name: String,
        prev: Option<Arc<Prepared>>,
    },
    Portal {
        name: String,
        prev: Option<Arc<Portal>>,
    },
}

/// Prepared statements and portals by name, as the server will have them
/// once everything forwarded so far is processed. Changes are applied when
/// a message is forwarded (so an Execute later in the same batch sees its
/// Bind), and undone, newest first, when the server refuses or skips the
/// message: the tables can lose a name the server has (then the gateway
/// refuses to run it) but never hold a different statement under a name.
#[derive(Debug, Default)]
pub struct Names {
    pub(super) statements: HashMap<String, Arc<Prepared>>,
    pub(super) portals: HashMap<String, Arc<Portal>>,
    /// Bumped when the tables are cleared, so undoing an older change
    /// cannot bring back a name from before the clearing.
    pub(super) epoch: u64,
}

impl Names {
    pub fn statement(&self, name: &str) -> Option<&Arc<Prepared>> {
        self.statements.get(name)
    }

    pub fn portal(&self, name: &str) -> Option<&Arc<Portal>> {
        self.portals.get(name)
    }

    /// Forgets every name: after SQL-level PREPARE, DEALLOCATE or DISCARD,
    /// which change the server's tables in ways the gateway does not follow.
    pub fn clear(&mut self) {
        self.statements.clear();
        self.portals.clear();
        self.epoch += 1;
    }

    pub(super) fn undo(&mut self, change: Change, epoch: u64) {
        if epoch != self.epoch {
            return;
        }
        // A failed Parse or Bind of the unnamed statement or portal leaves
        // none (the server drops the old one first); a named one keeps the
        // old. Close never fails, so its undo is only for skipped Closes.
        match change {
            Change::Statement { name, prev } => match prev {
                Some(p) if !name.is_empty() => {
                    self.statements.insert(name, p);
                }
                _ => {
                    self.statements.remove(&name);
                }
            },
            Change::Portal { name, prev } => match prev {
                Some(p) if !name.is_empty() => {
                    self.portals.insert(name, p);
                }
                _ => {
                    self.portals.remove(&name);
                }
            },
        }
    }
}
