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
    /// Prepared by SQL `PREPARE`: `sql` is the statement it names, while
    /// the server's log names the whole query string that prepared it,
    /// so a protocol-level Bind of it is not taken (see `ClientHalf`).
    pub by_sql: bool,
    /// What the gateway sent in its place (see `record::Statement`).
    pub sent_as: Option<Arc<str>>,
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
#[derive(Clone, Debug)]
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
/// That holds only within one batch (up to Sync): a message that looks a
/// name up behind an unanswered Sync waits for the answer (see
/// `ClientHalf`), because the server runs it whether or not what came
/// before succeeded.
#[derive(Debug, Default)]
pub struct Names {
    pub(super) statements: HashMap<String, Arc<Prepared>>,
    pub(super) portals: HashMap<String, Arc<Portal>>,
    /// Bumped when the statements are cleared, so undoing an older change
    /// cannot bring back a name from before the clearing.
    pub(super) statement_epoch: u64,
    /// The same for portals, which also end with their transaction.
    pub(super) portal_epoch: u64,
}

/// What a statement the server runs may do to the session's names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameEffect {
    None,
    /// DECLARE, CLOSE, or the end of a transaction: cursors (portals) come
    /// and go.
    Portals,
    /// SQL-level PREPARE or DEALLOCATE of one name: that statement comes
    /// or goes.
    Statement(String),
    /// DEALLOCATE ALL, DISCARD, or code the gateway cannot see into:
    /// anything may change.
    All,
}

impl NameEffect {
    /// The effect of running `sql`, one statement so classified: a
    /// PREPARE or DEALLOCATE of one name changes that name only (psycopg
    /// evicts its cached statements one by one with `DEALLOCATE _pg3_N`).
    pub fn of_statement(sql: &str, c: &Classification) -> NameEffect {
        if c.statements <= 1 && c.opaque.is_empty() {
            match c.command.as_str() {
                "DEALLOCATE" => {
                    if let Some(taskgate_sqlclass::Deallocated::Name(name)) =
                        taskgate_sqlclass::deallocated_statement(sql)
                    {
                        return NameEffect::Statement(name);
                    }
                }
                "PREPARE" => {
                    if let Some((name, _)) = taskgate_sqlclass::prepared_statement(sql) {
                        return NameEffect::Statement(name);
                    }
                }
                _ => {}
            }
        }
        NameEffect::of(c)
    }

    /// The effect of running a statement so classified.
    pub fn of(c: &Classification) -> NameEffect {
        if !c.opaque.is_empty() || c.class == taskgate_sqlclass::Class::Unknown {
            return NameEffect::All;
        }
        let mut effect = NameEffect::None;
        for command in c.command.split("; ") {
            match command {
                "PREPARE" | "DEALLOCATE" | "DEALLOCATE ALL" => return NameEffect::All,
                c if c.starts_with("DISCARD") => return NameEffect::All,
                "DECLARE CURSOR"
                | "CLOSE CURSOR"
                | "CLOSE CURSOR ALL"
                | "COMMIT"
                | "ROLLBACK"
                | "ROLLBACK TO SAVEPOINT"
                | "PREPARE TRANSACTION" => effect = NameEffect::Portals,
                _ => {}
            }
        }
        effect
    }
}

impl Names {
    pub fn statement(&self, name: &str) -> Option<&Arc<Prepared>> {
        self.statements.get(name)
    }

    /// Bumped each time the statements are forgotten.
    pub fn statement_epoch(&self) -> u64 {
        self.statement_epoch
    }

    pub fn portal(&self, name: &str) -> Option<&Arc<Portal>> {
        self.portals.get(name)
    }

    /// Forgets what a statement being run may change: the gateway does not
    /// follow SQL-level names, so it loses its own rather than risk naming
    /// the wrong statement or cursor.
    pub fn forget(&mut self, effect: NameEffect) {
        match effect {
            NameEffect::None => {}
            NameEffect::Portals => self.drop_portals(),
            NameEffect::Statement(name) => {
                self.statements.remove(&name);
                // What was to be confirmed before it is not taken (see
                // `Tracker::on_backend`); portals stay: one bound to the
                // statement keeps running what it was bound to.
                self.statement_epoch += 1;
            }
            NameEffect::All => {
                self.statements.clear();
                self.statement_epoch += 1;
                self.drop_portals();
            }
        }
    }

    /// Every portal is gone: its transaction ended, or it may have been
    /// replaced.
    pub fn drop_portals(&mut self) {
        self.portals.clear();
        self.portal_epoch += 1;
    }

    pub(super) fn epoch_of(&self, change: &Change) -> u64 {
        match change {
            Change::Statement { .. } => self.statement_epoch,
            Change::Portal { .. } => self.portal_epoch,
        }
    }

    pub(super) fn undo(&mut self, change: Change, epoch: u64) {
        if epoch != self.epoch_of(&change) {
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
