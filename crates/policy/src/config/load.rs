//! Parsing with locations. Each section and each list element is
//! deserialized on its own, so one bad policy does not hide the next.

use std::fmt;
use std::ops::{Deref, Range};

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::types::{Config, IdentityConfig};

/// One problem in a config file: where it is and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    /// 1-based line and column, when known.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The field, e.g. `policies[1].approve.by`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(col)) => write!(f, "line {line}, column {col}: ")?,
            (Some(line), None) => write!(f, "line {line}: ")?,
            _ => {}
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// A config element with the place it was written.
#[derive(Clone, Debug)]
pub struct Located<T> {
    pub line: usize,
    /// Its path, e.g. `connections[0]`.
    pub path: String,
    pub value: T,
}

impl<T> Deref for Located<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// Turns byte offsets into 1-based line and column.
struct Lines<'a>(&'a str);

impl Lines<'_> {
    fn position(&self, offset: usize) -> (usize, usize) {
        let before = self.0.get(..offset.min(self.0.len())).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }
}

struct Parser<'a> {
    lines: Lines<'a>,
    problems: Vec<ConfigProblem>,
}

impl Parser<'_> {
    fn problem_at(&mut self, span: Option<Range<usize>>, field: &str, message: impl Into<String>) {
        let (line, column) = match span.map(|s| self.lines.position(s.start)) {
            Some((l, c)) => (Some(l), Some(c)),
            None => (None, None),
        };
        self.problems.push(ConfigProblem {
            line,
            column,
            field: field.to_owned(),
            message: message.into(),
        });
    }

    fn typed<T: DeserializeOwned>(
        &mut self,
        value: &Spanned<DeValue<'_>>,
        path: &str,
    ) -> Option<T> {
        match T::deserialize(ValueDeserializer::from(value.clone())) {
            Ok(v) => Some(v),
            Err(e) => {
                let span = e.span().or_else(|| Some(value.span()));
                self.problem_at(span, path, e.message().trim().to_owned());
                None
            }
        }
    }

    fn located<T: DeserializeOwned>(
        &mut self,
        value: &Spanned<DeValue<'_>>,
        path: String,
    ) -> Option<Located<T>> {
        let line = self.lines.position(value.span().start).0;
        self.typed(value, &path)
            .map(|value| Located { line, path, value })
    }

    /// An array of tables, each element deserialized on its own.
    fn list<T: DeserializeOwned>(
        &mut self,
        value: &Spanned<DeValue<'_>>,
        path: &str,
    ) -> Vec<Located<T>> {
        let Some(items) = value.get_ref().as_array() else {
            self.problem_at(
                Some(value.span()),
                path,
                format!("must be a list of tables ([[{path}]])"),
            );
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| self.located(item, format!("{path}[{i}]")))
            .collect()
    }

    fn identity(&mut self, value: &Spanned<DeValue<'_>>) -> IdentityConfig {
        let mut identity = IdentityConfig::default();
        let Some(table) = value.get_ref().as_table() else {
            self.problem_at(Some(value.span()), "identity", "must be a table");
            return identity;
        };
        for (key, value) in table.iter() {
            match key.get_ref().as_ref() {
                "dev" => identity.dev = self.list(value, "identity.dev"),
                "oidc" => identity.oidc = self.list(value, "identity.oidc"),
                other => self.problem_at(
                    Some(key.span()),
                    &format!("identity.{other}"),
                    "unknown identity provider (expected dev or oidc)",
                ),
            }
        }
        identity
    }

    fn document(&mut self, root: &DeTable<'_>) -> Config {
        let mut config = Config::default();
        for (key, value) in root.iter() {
            let name = key.get_ref().as_ref();
            match name {
                "server" => {
                    if let Some(v) = self.typed(value, name) {
                        config.server = v;
                    }
                }
                "store" => {
                    if let Some(v) = self.typed(value, name) {
                        config.store = v;
                    }
                }
                "audit" => {
                    if let Some(v) = self.typed(value, name) {
                        config.audit = v;
                    }
                }
                "roles" => {
                    if let Some(v) = self.typed(value, name) {
                        config.roles = v;
                    }
                }
                "mcp" => {
                    if let Some(v) = self.typed(value, name) {
                        config.mcp = v;
                    }
                }
                "console" => {
                    if let Some(v) = self.typed(value, name) {
                        config.console = v;
                    }
                }
                "identity" => config.identity = self.identity(value),
                "connections" => config.connections = self.list(value, name),
                "policies" => config.policies = self.list(value, name),
                "sinks" => config.sinks = self.list(value, name),
                other => self.problem_at(
                    Some(key.span()),
                    other,
                    "unknown section (expected server, store, audit, identity, roles, mcp, console, connections, policies or sinks)",
                ),
            }
        }
        config
    }
}

/// Parses and validates a whole config file. On failure returns every
/// problem found, in file order.
pub fn parse(source: &str) -> Result<Config, Vec<ConfigProblem>> {
    let mut parser = Parser {
        lines: Lines(source),
        problems: Vec::new(),
    };
    let (root, syntax_errors) = DeTable::parse_recoverable(source);
    for error in &syntax_errors {
        parser.problem_at(error.span(), "", error.message().trim().to_owned());
    }
    if !parser.problems.is_empty() {
        return Err(parser.problems);
    }
    let mut config = parser.document(root.get_ref());
    let mut problems = parser.problems;
    super::issuers::resolve(&mut config, &mut problems);
    super::validate::validate(&config, &mut problems);
    if problems.is_empty() {
        Ok(config)
    } else {
        problems.sort_by_key(|p| (p.line.unwrap_or(usize::MAX), p.column));
        Err(problems)
    }
}

#[cfg(test)]
mod tests;
