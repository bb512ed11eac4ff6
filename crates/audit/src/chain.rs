//! The hash chain: `hash = SHA-256(prev_hash || canonical bytes of the event)`.
//!
//! Sealing is split in two so the single writer does as little as possible:
//! [`EventDraft::prepare`] encodes everything but the sequence number (any
//! thread, in parallel), and [`Chain::seal_prepared`] splices the number in
//! and hashes (the writer, in order).

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::canonical::{CanonicalError, to_canonical};
use crate::{EventDraft, EventType, Identity, SCHEMA_VERSION, Timestamp};

pub type Hash = [u8; 32];

/// The `prev_hash` of the first event of every chain.
pub const GENESIS_HASH: Hash = [0; 32];

/// Where a chain ends: the last sequence number and its hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: u64,
    pub hash: Hash,
}

impl ChainHead {
    pub const EMPTY: ChainHead = ChainHead {
        seq: 0,
        hash: GENESIS_HASH,
    };
}

/// The searchable columns of an event, copied out of its body for storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventColumns {
    pub time: Timestamp,
    pub event_type: EventType,
    pub task: Option<String>,
    pub session: Option<String>,
    pub connection: Option<String>,
    pub subject: Option<String>,
}

/// An event encoded canonically except for its sequence number.
#[derive(Clone, Debug)]
pub struct PreparedEvent {
    pub columns: EventColumns,
    /// `{"chain":..,"connection":..,"identity":..,"payload":..,`
    head: Vec<u8>,
    /// `,"session":..,"task":..,"time":..,"type":..,"v":1}`
    tail: Vec<u8>,
}

/// An event with its place in the chain, ready to store.
#[derive(Clone, Debug)]
pub struct SealedEvent {
    pub seq: u64,
    pub columns: EventColumns,
    /// The canonical bytes that were hashed; stored verbatim.
    pub body: Vec<u8>,
    pub hash: Hash,
}

impl SealedEvent {
    /// Rebuilds a sealed event from its stored bytes, linking it to `prev`:
    /// for reading events back from somewhere other than the store (the
    /// writer's journal). Fails if the bytes are not an event numbered `seq`.
    pub fn from_stored(prev: &Hash, seq: u64, body: Vec<u8>) -> Result<SealedEvent, String> {
        let event: crate::Event =
            serde_json::from_slice(&body).map_err(|e| format!("not an event: {e}"))?;
        if event.seq != seq {
            return Err(format!("framed as event {seq} but numbered {}", event.seq));
        }
        let hash = link(prev, &body);
        Ok(SealedEvent {
            seq,
            columns: EventColumns {
                time: event.time,
                event_type: event.event_type,
                task: event.task,
                session: event.session,
                connection: event.connection,
                subject: event.identity.map(|i| i.subject),
            },
            body,
            hash,
        })
    }
}

/// The fields before `seq`, in canonical (alphabetical) order.
#[derive(Serialize)]
struct Head<'a> {
    chain: &'a str,
    connection: &'a Option<String>,
    identity: &'a Option<Identity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: &'a Option<String>,
    #[serde(serialize_with = "crate::canonical::sorted")]
    payload: &'a Value,
}

/// The fields after `seq`, in canonical (alphabetical) order.
#[derive(Serialize)]
struct Tail<'a> {
    session: &'a Option<String>,
    task: &'a Option<String>,
    time: Timestamp,
    #[serde(rename = "type")]
    event_type: EventType,
    v: u32,
}

impl EventDraft {
    /// Encodes the draft for `chain`, leaving a slot for the sequence number.
    pub fn prepare(self, chain: &str) -> Result<PreparedEvent, CanonicalError> {
        let mut head = to_canonical(&Head {
            chain,
            connection: &self.connection,
            identity: &self.identity,
            node: &self.node,
            payload: &self.payload,
        })?;
        // `{...}` becomes `{...,` ready for `"seq":N`.
        head.pop();
        head.push(b',');
        let mut tail = to_canonical(&Tail {
            session: &self.session,
            task: &self.task,
            time: self.time,
            event_type: self.event_type,
            v: SCHEMA_VERSION,
        })?;
        // `{...}` becomes `,...}`.
        tail[0] = b',';
        Ok(PreparedEvent {
            columns: EventColumns {
                time: self.time,
                event_type: self.event_type,
                subject: self.identity.map(|i| i.subject),
                task: self.task,
                session: self.session,
                connection: self.connection,
            },
            head,
            tail,
        })
    }
}

/// One node's chain: seals events onto its head.
#[derive(Clone, Debug)]
pub struct Chain {
    id: String,
    head: ChainHead,
}

pub(crate) fn link(prev: &Hash, body: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(prev);
    hasher.update(body);
    hasher.finalize().into()
}

impl Chain {
    pub fn new(id: impl Into<String>, head: ChainHead) -> Self {
        Self {
            id: id.into(),
            head,
        }
    }

    pub fn head(&self) -> ChainHead {
        self.head
    }

    /// Seals a prepared event as the next one and advances the head. The
    /// caller must store the result or [`Chain::reset`] to the last stored
    /// head. `prepared` must have been prepared for this chain's id.
    pub fn seal_prepared(&mut self, prepared: PreparedEvent) -> SealedEvent {
        let seq = self.head.seq + 1;
        let number = itoa_buffer(seq);
        let mut body = prepared.head;
        body.reserve(prepared.tail.len() + 26);
        body.extend_from_slice(b"\"seq\":");
        body.extend_from_slice(number.as_bytes());
        body.extend_from_slice(&prepared.tail);
        let hash = link(&self.head.hash, &body);
        self.head = ChainHead { seq, hash };
        SealedEvent {
            seq,
            columns: prepared.columns,
            body,
            hash,
        }
    }

    /// Prepares and seals a draft in one step.
    pub fn seal(&mut self, draft: EventDraft) -> Result<SealedEvent, CanonicalError> {
        let prepared = draft.prepare(&self.id)?;
        Ok(self.seal_prepared(prepared))
    }

    /// Moves the head back, after a batch failed to commit.
    pub fn reset(&mut self, head: ChainHead) {
        self.head = head;
    }
}

/// Decimal digits of a sequence number without going through `fmt`.
struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

fn itoa_buffer(mut n: u64) -> Digits {
    let mut buf = [0u8; 20];
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    Digits { buf, start }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, IdentityKind};

    #[test]
    fn each_hash_covers_the_previous_one() -> Result<(), CanonicalError> {
        let mut chain = Chain::new("node-a", ChainHead::EMPTY);
        let t = Timestamp::from_micros(0);
        let first = chain.seal(EventDraft::new(EventType::TaskRequested, t))?;
        let second = chain.seal(EventDraft::new(EventType::TaskActivated, t))?;
        assert_eq!(first.seq, 1);
        assert_eq!(second.seq, 2);
        assert_eq!(first.hash, link(&GENESIS_HASH, &first.body));
        assert_eq!(second.hash, link(&first.hash, &second.body));
        assert_eq!(chain.head().hash, second.hash);
        Ok(())
    }

    #[test]
    fn body_is_canonical_json_with_sorted_keys() -> Result<(), CanonicalError> {
        let mut chain = Chain::new("n", ChainHead::EMPTY);
        let draft = EventDraft::new(EventType::TaskEnded, Timestamp::from_micros(0))
            .task("t1")
            .payload(serde_json::json!({"reason": "done", "by": "x"}));
        let sealed = chain.seal(draft)?;
        let text = String::from_utf8_lossy(&sealed.body).into_owned();
        assert_eq!(
            text,
            r#"{"chain":"n","connection":null,"identity":null,"payload":{"by":"x","reason":"done"},"seq":1,"session":null,"task":"t1","time":"1970-01-01T00:00:00.000000Z","type":"task.ended","v":1}"#
        );
        Ok(())
    }

    /// The spliced body is byte for byte what serializing the whole event gives.
    #[test]
    fn splicing_the_sequence_equals_encoding_the_whole_event() -> Result<(), CanonicalError> {
        let identity = Identity {
            claims: [("repository".into(), "acme/shop".into())].into(),
            groups: vec!["dba".into(), "a\"b".into()],
            issuer: "dev".into(),
            kind: IdentityKind::Human,
            subject: "alice\u{e9}".into(),
        };
        let draft = EventDraft::new(EventType::CommandStarted, Timestamp::from_micros(123_456))
            .identity(&identity)
            .node("gw-a")
            .task("tsk_1")
            .session("ses_1")
            .connection("orders-db")
            .payload(serde_json::json!({"sql": "SELECT '\n'", "z": [1, {"b": 2, "a": null}]}));
        let mut chain = Chain::new(
            "node-x",
            ChainHead {
                seq: 9_999,
                hash: [1; 32],
            },
        );
        let sealed = chain.seal(draft.clone())?;
        let whole = Event {
            chain: "node-x".into(),
            connection: draft.connection,
            identity: draft.identity,
            node: draft.node,
            payload: draft.payload,
            seq: 10_000,
            session: draft.session,
            task: draft.task,
            time: draft.time,
            event_type: draft.event_type,
            v: SCHEMA_VERSION,
        };
        assert_eq!(
            String::from_utf8_lossy(&sealed.body),
            String::from_utf8_lossy(&to_canonical(&whole)?)
        );
        assert_eq!(sealed.columns.subject.as_deref(), Some("alice\u{e9}"));
        Ok(())
    }
}
