//! What the auditor's questions need to know about one event, read out of
//! its hashed body. Search indexes are built from these facts alone, so
//! rebuilding them from the chain gives the same answers.

use serde::Deserialize;

use crate::{EventType, IdentityKind, Timestamp};

/// The searchable facts of one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventFacts {
    pub seq: u64,
    pub time: Timestamp,
    pub event_type: EventType,
    pub subject: Option<String>,
    pub kind: Option<IdentityKind>,
    pub task: Option<String>,
    pub session: Option<String>,
    pub connection: Option<String>,
    /// The session's command number, for `command.*` events: it ties a
    /// command's outcome to its start.
    pub command: Option<u64>,
    /// The statement's class, for `command.started` and `command.denied`.
    pub class: Option<String>,
    /// Every table the statement read or wrote.
    pub tables: Vec<TableUse>,
}

/// One table a statement touched, named as the statement named it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableUse {
    pub name: String,
    pub read: bool,
    pub written: bool,
}

/// Only the fields the facts come from; everything else is skipped unread.
#[derive(Deserialize)]
struct Body {
    seq: u64,
    time: Timestamp,
    #[serde(rename = "type")]
    event_type: EventType,
    identity: Option<Who>,
    task: Option<String>,
    session: Option<String>,
    connection: Option<String>,
    #[serde(default)]
    payload: Payload,
}

#[derive(Deserialize)]
struct Who {
    subject: String,
    kind: IdentityKind,
}

#[derive(Default, Deserialize)]
struct Payload {
    command: Option<u64>,
    class: Option<String>,
    #[serde(default)]
    tables_read: Vec<String>,
    #[serde(default)]
    tables_written: Vec<String>,
    #[serde(default)]
    opaque: Vec<String>,
}

impl EventFacts {
    /// Reads the facts out of an event's canonical body.
    pub fn from_body(body: &[u8]) -> Result<Self, serde_json::Error> {
        let body: Body = serde_json::from_slice(body)?;
        let statement = matches!(
            body.event_type,
            EventType::CommandStarted | EventType::CommandDenied
        );
        let (class, tables) = if statement {
            let p = &body.payload;
            let mut tables = table_uses(&p.tables_read, &p.tables_written);
            if !p.opaque.is_empty() {
                // Code the gateway could not read may touch any table.
                tables.push(TableUse {
                    name: ANY_TABLE.to_owned(),
                    read: true,
                    written: true,
                });
            }
            (p.class.clone(), tables)
        } else {
            (None, Vec::new())
        };
        let command = match body.event_type {
            EventType::CommandStarted | EventType::CommandCompleted => body.payload.command,
            _ => None,
        };
        let (subject, kind) = match body.identity {
            Some(who) => (Some(who.subject), Some(who.kind)),
            None => (None, None),
        };
        Ok(Self {
            seq: body.seq,
            time: body.time,
            event_type: body.event_type,
            subject,
            kind,
            task: body.task,
            session: body.session,
            connection: body.connection,
            command,
            class,
            tables,
        })
    }
}

fn table_uses(read: &[String], written: &[String]) -> Vec<TableUse> {
    let mut uses: Vec<TableUse> = Vec::with_capacity(read.len() + written.len());
    for (names, is_write) in [(read, false), (written, true)] {
        for name in names {
            match uses.iter_mut().find(|u| u.name == *name) {
                Some(u) if is_write => u.written = true,
                Some(u) => u.read = true,
                None => uses.push(TableUse {
                    name: name.clone(),
                    read: !is_write,
                    written: is_write,
                }),
            }
        }
    }
    uses
}

/// The table name under which a statement with opaque code is indexed: it
/// may have touched any table, so a search for any table finds it.
pub const ANY_TABLE: &str = "*";

/// The names under which a table is found by search: as the statement named
/// it; when qualified (`shop.orders`), by its bare name too, so that
/// `--table orders` finds it in any schema; when bare, as `*.orders`, so
/// that `--table shop.orders` finds it too (the session's `search_path`
/// decided which schema that was).
pub fn table_search_names(name: &str) -> Vec<String> {
    if name == ANY_TABLE {
        return vec![name.to_owned()];
    }
    match name.rsplit_once('.') {
        Some((_, bare)) => vec![name.to_owned(), bare.to_owned()],
        None => vec![name.to_owned(), format!("*.{name}")],
    }
}

/// The names a search for `table` looks up: the table as given, every
/// statement that named it without a schema (when it is qualified), and
/// every statement with opaque code.
pub fn table_query_names(table: &str) -> Vec<String> {
    let mut names = vec![table.to_owned()];
    if let Some((_, bare)) = table.rsplit_once('.') {
        names.push(format!("*.{bare}"));
    }
    if table != ANY_TABLE {
        names.push(ANY_TABLE.to_owned());
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Chain, ChainHead, EventDraft, Identity};
    use serde_json::json;

    fn body(draft: EventDraft) -> Vec<u8> {
        let mut chain = Chain::new("c", ChainHead::EMPTY);
        chain.seal(draft).map(|s| s.body).unwrap_or_default()
    }

    #[test]
    fn a_statement_gives_its_class_tables_and_command() -> Result<(), serde_json::Error> {
        let agent = Identity {
            claims: Default::default(),
            groups: vec![],
            issuer: "dev".into(),
            kind: IdentityKind::Agent,
            subject: "copilot".into(),
        };
        let draft = EventDraft::new(EventType::CommandStarted, Timestamp::from_micros(7))
            .identity(&agent)
            .task("tsk_1")
            .session("ses_1")
            .connection("shop")
            .payload(json!({
                "command": 3,
                "class": "write",
                "sql": "INSERT INTO shop.orders SELECT * FROM orders_staging JOIN shop.orders USING (id)",
                "tables_read": ["orders_staging", "shop.orders"],
                "tables_written": ["shop.orders"],
            }));
        let facts = EventFacts::from_body(&body(draft))?;
        assert_eq!(facts.seq, 1);
        assert_eq!(facts.subject.as_deref(), Some("copilot"));
        assert_eq!(facts.kind, Some(IdentityKind::Agent));
        assert_eq!(facts.command, Some(3));
        assert_eq!(facts.class.as_deref(), Some("write"));
        assert_eq!(
            facts.tables,
            vec![
                TableUse {
                    name: "orders_staging".into(),
                    read: true,
                    written: false
                },
                TableUse {
                    name: "shop.orders".into(),
                    read: true,
                    written: true
                },
            ]
        );
        Ok(())
    }

    #[test]
    fn other_events_carry_no_statement_facts() -> Result<(), serde_json::Error> {
        let draft = EventDraft::new(EventType::TaskEnded, Timestamp::from_micros(7))
            .task("tsk_1")
            .payload(json!({"class": "read", "tables_read": ["x"], "command": 1}));
        let facts = EventFacts::from_body(&body(draft))?;
        assert_eq!(
            (facts.class, facts.tables, facts.command),
            (None, vec![], None)
        );
        assert_eq!(facts.kind, None);
        Ok(())
    }

    #[test]
    fn qualified_tables_are_found_by_bare_name_too() {
        assert_eq!(table_search_names("shop.orders"), ["shop.orders", "orders"]);
        assert_eq!(table_search_names("orders"), ["orders", "*.orders"]);
        assert_eq!(table_search_names("*"), ["*"]);
        assert_eq!(
            table_query_names("s2.orders"),
            ["s2.orders", "*.orders", "*"]
        );
        assert_eq!(table_query_names("orders"), ["orders", "*"]);
    }

    #[test]
    fn opaque_code_may_touch_any_table() -> Result<(), serde_json::Error> {
        let draft = EventDraft::new(EventType::CommandStarted, Timestamp::from_micros(7))
            .task("tsk_1")
            .payload(json!({"class": "write", "tables_read": [], "command": 1,
                            "opaque": ["function touch_customers()"]}));
        let facts = EventFacts::from_body(&body(draft))?;
        assert_eq!(facts.tables.len(), 1);
        assert_eq!(facts.tables[0].name, ANY_TABLE);
        Ok(())
    }
}
