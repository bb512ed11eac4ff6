//! The hash chain: `hash = SHA-256(prev_hash || canonical bytes of the event)`.

use sha2::{Digest, Sha256};

use crate::canonical::{CanonicalError, to_canonical};
use crate::{Event, EventDraft, SCHEMA_VERSION};

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

/// An event with its place in the chain, ready to store.
#[derive(Clone, Debug)]
pub struct SealedEvent {
    pub event: Event,
    /// The canonical bytes that were hashed; stored verbatim.
    pub body: Vec<u8>,
    pub hash: Hash,
}

/// One node's chain: seals drafts onto its head.
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

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn head(&self) -> ChainHead {
        self.head
    }

    /// Seals a draft as the next event and advances the head. The caller
    /// must store the result or [`Chain::reset`] to the last stored head.
    pub fn seal(&mut self, draft: EventDraft) -> Result<SealedEvent, CanonicalError> {
        let event = Event {
            chain: self.id.clone(),
            connection: draft.connection,
            identity: draft.identity,
            payload: draft.payload,
            seq: self.head.seq + 1,
            session: draft.session,
            task: draft.task,
            time: draft.time,
            event_type: draft.event_type,
            v: SCHEMA_VERSION,
        };
        let body = to_canonical(&event)?;
        let hash = link(&self.head.hash, &body);
        self.head = ChainHead {
            seq: event.seq,
            hash,
        };
        Ok(SealedEvent { event, body, hash })
    }

    /// Moves the head back, after a batch failed to commit.
    pub fn reset(&mut self, head: ChainHead) {
        self.head = head;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventType, Timestamp};

    #[test]
    fn each_hash_covers_the_previous_one() -> Result<(), CanonicalError> {
        let mut chain = Chain::new("node-a", ChainHead::EMPTY);
        let t = Timestamp::from_micros(0);
        let first = chain.seal(EventDraft::new(EventType::TaskRequested, t))?;
        let second = chain.seal(EventDraft::new(EventType::TaskActivated, t))?;
        assert_eq!(first.event.seq, 1);
        assert_eq!(second.event.seq, 2);
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
}
