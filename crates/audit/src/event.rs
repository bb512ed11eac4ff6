//! Event types and the event record itself.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Identity, Timestamp};

/// Version of the event body's shape; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

macro_rules! event_types {
    ($($variant:ident => $name:literal),* $(,)?) => {
        /// Every kind of event the log records (SPEC §6).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum EventType {
            $(#[serde(rename = $name)] $variant,)*
        }

        impl EventType {
            pub const ALL: &'static [EventType] = &[$(EventType::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventType::$variant => $name,)*
                }
            }
        }

        impl FromStr for EventType {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($name => Ok(EventType::$variant),)*
                    other => Err(format!("unknown event type {other:?}")),
                }
            }
        }
    };
}

event_types! {
    TaskRequested => "task.requested",
    TaskApproved => "task.approved",
    TaskDenied => "task.denied",
    TaskActivated => "task.activated",
    TaskEnded => "task.ended",
    TaskExpired => "task.expired",
    TaskRevoked => "task.revoked",
    ReviewRequested => "review.requested",
    ReviewApproved => "review.approved",
    ReviewDenied => "review.denied",
    SessionOpened => "session.opened",
    SessionClosed => "session.closed",
    CommandStarted => "command.started",
    CommandCompleted => "command.completed",
    CommandDenied => "command.denied",
    AuthFailed => "auth.failed",
    Checkpoint => "checkpoint",
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a caller submits: everything but the position in the chain.
#[derive(Clone, Debug, PartialEq)]
pub struct EventDraft {
    pub event_type: EventType,
    pub time: Timestamp,
    pub identity: Option<Identity>,
    pub task: Option<String>,
    pub session: Option<String>,
    pub connection: Option<String>,
    /// The gateway node that recorded the event (`[server] node`); set by
    /// the writer.
    pub node: Option<String>,
    pub payload: Value,
}

impl EventDraft {
    pub fn new(event_type: EventType, time: Timestamp) -> Self {
        Self {
            event_type,
            time,
            identity: None,
            task: None,
            session: None,
            connection: None,
            node: None,
            payload: Value::Object(Default::default()),
        }
    }

    pub fn identity(mut self, identity: &Identity) -> Self {
        self.identity = Some(identity.clone());
        self
    }

    pub fn task(mut self, task: impl Into<String>) -> Self {
        self.task = Some(task.into());
        self
    }

    pub fn session(mut self, session: impl Into<String>) -> Self {
        self.session = Some(session.into());
        self
    }

    pub fn connection(mut self, connection: impl Into<String>) -> Self {
        self.connection = Some(connection.into());
        self
    }

    pub fn node(mut self, node: impl Into<String>) -> Self {
        self.node = Some(node.into());
        self
    }

    pub fn payload(mut self, payload: Value) -> Self {
        self.payload = payload;
        self
    }
}

/// A sealed event's body, exactly as hashed and stored. Fields are declared
/// in alphabetical order so that serde writes them in canonical order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// The chain (store) this event belongs to.
    pub chain: String,
    pub connection: Option<String>,
    pub identity: Option<Identity>,
    /// The gateway node that recorded it (absent in events recorded before
    /// nodes were named).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(serialize_with = "crate::canonical::sorted")]
    pub payload: Value,
    pub seq: u64,
    pub session: Option<String>,
    pub task: Option<String>,
    pub time: Timestamp,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub v: u32,
}
