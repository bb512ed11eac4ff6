//! What may run under a grant: each statement's classification and text in,
//! a decision out.
//!
//! Two layers, and the strictest outcome wins (`deny` over `review` over
//! `allow`):
//! 1. The grant's access level sets a ceiling no rule can lift: a `read`
//!    grant runs only reads, transaction control and session utilities;
//!    `write` adds writes and DDL; only `admin` runs DCL. A statement that
//!    would lift a read-only session is denied under `read`. A statement the
//!    parser cannot classify (`unknown`) is never allowed silently under a
//!    `read` or `write` grant: it needs review. Text the grammar refuses is
//!    `Invalid`, whatever the grant: refused as a syntax error, never run.
//! 2. Statement rules of every policy that covers the task (its requester,
//!    connection and access level). A rule matches when all of its given
//!    criteria match: a command that runs (by the parse tree, nested ones
//!    included), class, any table read or written, and the regex over the
//!    statement's text.
//!
//! A decision is always on one statement as PostgreSQL's parser splits the
//! text (`taskgate_sqlclass::split`): the caller never hands the whole of
//! a multi-statement string, nor the empty statements and comments before
//! one, so an anchored regex (`^\s*TRUNCATE`) sees the statement where it
//! starts. Code the gateway cannot see into (`opaque`) may run any command
//! and touch any table: `command` and `tables` criteria match it.

use regex::Regex;
use taskgate_sqlclass::{Class, Classification};

use crate::config::{Config, RuleAction, StatementRule};
use crate::{Access, Matcher, Task};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StatementDecision {
    Allow,
    /// Refused; the reason is shown to the client and recorded.
    Deny {
        reason: String,
    },
    /// Held until one of `by` approves.
    Review {
        reason: String,
        by: Vec<Matcher>,
    },
    /// Not SQL PostgreSQL's grammar accepts: refused at once as the server
    /// would refuse it (`42601`), never forwarded; `message` is the
    /// parser's.
    Invalid {
        message: String,
    },
}

impl StatementDecision {
    fn rank(&self) -> u8 {
        match self {
            StatementDecision::Allow => 0,
            StatementDecision::Review { .. } => 1,
            StatementDecision::Deny { .. } => 2,
            StatementDecision::Invalid { .. } => 3,
        }
    }

    /// The stricter of two decisions; on a tie, the first.
    fn stricter(self, other: StatementDecision) -> StatementDecision {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }
}

struct Rule {
    commands: Vec<String>,
    classes: Vec<Class>,
    tables: Vec<String>,
    regex: Option<Regex>,
    action: RuleAction,
    by: Vec<Matcher>,
    origin: String,
}

/// The statement rules in force for one task, compiled once per session.
pub struct StatementPolicy {
    access: Access,
    rules: Vec<Rule>,
    /// Who approves a review when its rule names nobody.
    default_approvers: Vec<Matcher>,
    /// The task's requester, who may never approve its own statements.
    requester: crate::Identity,
}

#[derive(Debug, thiserror::Error)]
#[error("{origin}: invalid regex: {error}")]
pub struct RuleError {
    origin: String,
    error: regex::Error,
}

/// `orders` matches `orders` in any schema; `shop.orders` that one, and
/// `orders` named without a schema (the session's `search_path` decides
/// where that is, and it can change: rules only ever tighten, so the wider
/// match is the safe one); `shop.*` every table named in `shop`; `*` every
/// table. Unquoted SQL names are case-insensitive, so the comparison is
/// too.
pub fn table_matches(pattern: &str, table: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let table = table.to_ascii_lowercase();
    if pattern == "*" {
        return true;
    }
    let (schema, name) = match table.rsplit_once('.') {
        Some((s, t)) => (Some(s), t),
        None => (None, table.as_str()),
    };
    if let Some(wanted) = pattern.strip_suffix(".*") {
        return schema == Some(wanted);
    }
    match pattern.rsplit_once('.') {
        Some((wanted_schema, wanted)) => {
            name == wanted && schema.is_none_or(|s| s == wanted_schema)
        }
        None => name == pattern,
    }
}

impl Rule {
    fn compile(rule: &StatementRule, origin: String) -> Result<Rule, RuleError> {
        let regex = match &rule.matches.regex {
            Some(pattern) => Some(Regex::new(pattern).map_err(|error| RuleError {
                origin: origin.clone(),
                error,
            })?),
            None => None,
        };
        Ok(Rule {
            commands: rule.matches.command.clone(),
            classes: rule.matches.class.clone(),
            tables: rule.matches.tables.clone(),
            regex,
            action: rule.action,
            by: rule.by.clone(),
            origin,
        })
    }

    fn matches(&self, sql: &str, c: &Classification) -> bool {
        (self.commands.is_empty()
            || !c.opaque.is_empty()
            || c.commands.iter().any(|have| {
                self.commands
                    .iter()
                    .any(|want| taskgate_sqlclass::command_matches(want, have))
            }))
            && (self.classes.is_empty() || self.classes.contains(&c.class))
            && (self.tables.is_empty()
                // Opaque code may touch any table.
                || !c.opaque.is_empty()
                || c.tables_read
                    .iter()
                    .chain(&c.tables_written)
                    .any(|t| self.tables.iter().any(|p| table_matches(p, t))))
            && self.regex.as_ref().is_none_or(|r| {
                // Comments can stand anywhere in the text; the rule sees it
                // both as sent and with them taken out.
                r.is_match(sql) || r.is_match(&taskgate_sqlclass::without_comments(sql))
            })
    }
}

impl StatementPolicy {
    /// The rules of every policy that covers this task.
    pub fn for_task(config: &Config, task: &Task) -> Result<StatementPolicy, RuleError> {
        let mut rules = Vec::new();
        for (p, policy) in config.policies.iter().enumerate() {
            let policy = &policy.value;
            let covers = Matcher::any_matches(&policy.who, &task.requester)
                && policy.covers_connection(&task.connection)
                && policy.access.contains(&task.access);
            if !covers {
                continue;
            }
            let name = policy
                .name
                .clone()
                .unwrap_or_else(|| format!("policies[{p}]"));
            for (i, rule) in policy.statements.iter().enumerate() {
                rules.push(Rule::compile(rule, format!("{name}.statements[{i}]"))?);
            }
        }
        let default_approvers = task
            .approvers
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        Ok(StatementPolicy {
            access: task.access,
            rules,
            default_approvers,
            requester: task.requester.clone(),
        })
    }

    fn ceiling(&self, sql: &str, c: &Classification) -> StatementDecision {
        let denied = |why: String| StatementDecision::Deny { reason: why };
        if taskgate_sqlclass::depends_on_standard_strings(sql) {
            // The server may read it either way (a statement ahead of it
            // can turn the setting off, reported only later): never guess.
            return denied(
                "the statement reads differently with standard_conforming_strings off (a backslash before a quote in a '...' string); write the string as E'...' or without the backslash".to_owned(),
            );
        }
        if let Some(error) = &c.error {
            return StatementDecision::Invalid {
                message: error.clone(),
            };
        }
        if c.class == Class::Unknown && self.access != Access::Admin {
            let why = format!(
                "{} statements run code the gateway cannot inspect",
                c.command
            );
            return StatementDecision::Review {
                reason: format!("{why}, so a {} grant needs a review", self.access),
                by: self.default_approvers.clone(),
            };
        }
        if !c.opaque.is_empty() && self.access != Access::Admin {
            return StatementDecision::Review {
                reason: format!(
                    "it runs code the gateway cannot inspect ({}), so a {} grant needs a review",
                    c.opaque.join(", "),
                    self.access
                ),
                by: self.default_approvers.clone(),
            };
        }
        match (self.access, c.class) {
            (Access::Read, _) if c.lifts_read_only => denied(format!(
                "{} would lift the read-only session of a read grant",
                c.command
            )),
            (Access::Read, Class::Write | Class::Ddl | Class::Dcl) => denied(format!(
                "a read grant does not allow {} statements ({})",
                c.class.as_str(),
                c.command
            )),
            (Access::Write, Class::Dcl) => denied(format!(
                "a write grant does not allow dcl statements ({}); they need an admin grant",
                c.command
            )),
            _ => StatementDecision::Allow,
        }
    }

    /// Decides one statement: `sql` is its own text as the parser splits
    /// it (see the module docs), `c` its classification. Rule reasons name
    /// the rule, so a refused client and an auditor both see which line of
    /// the config applied.
    pub fn decide(&self, sql: &str, c: &Classification) -> StatementDecision {
        let mut decision = self.ceiling(sql, c);
        for rule in self.rules.iter().filter(|r| r.matches(sql, c)) {
            let from_rule = match rule.action {
                RuleAction::Allow => StatementDecision::Allow,
                RuleAction::Deny => StatementDecision::Deny {
                    reason: format!("denied by rule {}", rule.origin),
                },
                RuleAction::Review => StatementDecision::Review {
                    reason: format!("rule {} requires a review", rule.origin),
                    by: if rule.by.is_empty() {
                        self.default_approvers.clone()
                    } else {
                        rule.by.clone()
                    },
                },
            };
            decision = decision.stricter(from_rule);
        }
        match decision {
            // Holding it would only wait out the hold: say so at once.
            StatementDecision::Review { reason, by }
                if !crate::grant::may_be_approved_by_another(&by, &self.requester) =>
            {
                StatementDecision::Deny {
                    reason: format!(
                        "{reason}, but no one other than the requester may approve it; name approvers (`by`) in the rule or in the grant's policy"
                    ),
                }
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests;
