//! Signed checkpoints: an Ed25519 signature over a chain's head, appended to
//! the chain as a `checkpoint` event and written to files kept outside the
//! gateway (like CloudTrail's digest files).
//!
//! Each checkpoint also signs the previous checkpoint's signature, so the
//! checkpoints form a chain of their own: a removed checkpoint shows even when
//! the event hashes were recomputed, and an external file that covers records
//! the log no longer holds shows that the newest records were cut off, which a
//! bare hash chain cannot see. So write the external file only once the
//! checkpoint's event is committed: verification reads an external checkpoint
//! whose own record is missing as a log cut short.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::canonical::{CanonicalError, to_canonical};
use crate::{ChainHead, Event, EventDraft, EventType, Timestamp};

/// DER of a PKCS#8 v1 Ed25519 private key (RFC 8410) up to the 32-byte seed:
/// what `openssl genpkey -algorithm ed25519` writes.
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// DER of an Ed25519 SubjectPublicKeyInfo up to the 32 key bytes.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// How a public key is written in config and on the command line.
const PUBLIC_KEY_SCHEME: &str = "ed25519:";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot draw a random key: {0}")]
    Random(getrandom::Error),
    #[error("not an Ed25519 private key in PKCS#8 PEM: {0}")]
    PrivatePem(String),
    #[error("not an Ed25519 public key (`ed25519:<base64>` or a PEM public key): {0}")]
    Public(String),
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint cannot be encoded: {0}")]
    Encoding(#[from] CanonicalError),
    #[error("signed by key {key_id}, not by the trusted key {trusted}")]
    WrongKey { key_id: String, trusted: String },
    #[error("its signature is not base64 of 64 bytes: {0}")]
    SignatureEncoding(String),
    #[error("its signature does not match its content")]
    Mismatch,
    #[error("not a checkpoint: {0}")]
    Malformed(String),
}

/// The key that signs checkpoints. Its secret never appears in `Debug`.
pub struct CheckpointKey(SigningKey);

impl CheckpointKey {
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(KeyError::Random)?;
        Ok(Self(SigningKey::from_bytes(&seed)))
    }

    /// Reads a PKCS#8 PEM private key (v1 as OpenSSL writes it, or v2).
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        SigningKey::from_pkcs8_pem(text.trim())
            .map(Self)
            .map_err(|e| KeyError::PrivatePem(e.to_string()))
    }

    /// PKCS#8 v1 PEM, readable by `openssl pkey`. Built from a fixed prefix
    /// so that it cannot fail.
    pub fn to_pem(&self) -> String {
        let mut der = PKCS8_PREFIX.to_vec();
        der.extend_from_slice(self.0.as_bytes());
        pem("PRIVATE KEY", &der)
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }
}

impl fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointKey")
            .field("key_id", &self.public_key().key_id())
            .finish_non_exhaustive()
    }
}

/// Both DER encodings base64-encode to at most 64 characters: one PEM line.
fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n")
}

/// The key that checks checkpoints: `ed25519:<base64 of the 32 bytes>`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Accepts `ed25519:<base64>` or an SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        if text.starts_with("-----BEGIN") {
            VerifyingKey::from_public_key_pem(text)
                .map(Self)
                .map_err(|e| KeyError::Public(e.to_string()))
        } else {
            text.parse()
        }
    }

    /// Names the key in checkpoints: the first 16 hex digits of the SHA-256
    /// of its 32 bytes.
    pub fn key_id(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        hex::encode(&digest[..8])
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// SPKI PEM, readable by `openssl pkey -pubin`.
    pub fn to_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(self.0.as_bytes());
        pem("PUBLIC KEY", &der)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PUBLIC_KEY_SCHEME}{}",
            STANDARD.encode(self.0.as_bytes())
        )
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<Self, KeyError> {
        let bad = |why: &str| KeyError::Public(why.to_owned());
        let encoded = text
            .strip_prefix(PUBLIC_KEY_SCHEME)
            .ok_or_else(|| bad("it does not start with `ed25519:`"))?;
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|e| KeyError::Public(e.to_string()))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| bad("it is not 32 bytes long"))?;
        VerifyingKey::from_bytes(&bytes)
            .map(Self)
            .map_err(|_| bad("it is not a point on the curve"))
    }
}

/// A signed statement that a chain reached `seq` with head `hash` at `time`.
/// Fields are declared in alphabetical order: canonical JSON relies on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub chain: String,
    /// Hex of the hash of record `seq`.
    pub hash: String,
    pub key_id: String,
    /// The previous checkpoint's signature in this chain; None for the first.
    pub prev_signature: Option<String>,
    /// The last record covered. The checkpoint's own event is `seq + 1`.
    pub seq: u64,
    /// Base64 of the Ed25519 signature over every other field.
    pub signature: String,
    pub time: Timestamp,
}

/// What is signed: the checkpoint without its signature, in canonical order.
#[derive(Serialize)]
struct Signed<'a> {
    chain: &'a str,
    hash: &'a str,
    key_id: &'a str,
    prev_signature: &'a Option<String>,
    seq: u64,
    time: Timestamp,
}

impl Checkpoint {
    /// Signs `head` of `chain`, following the checkpoint whose signature is
    /// `prev_signature`.
    pub fn sign(
        key: &CheckpointKey,
        chain: impl Into<String>,
        head: ChainHead,
        time: Timestamp,
        prev_signature: Option<String>,
    ) -> Result<Checkpoint, CheckpointError> {
        let mut checkpoint = Checkpoint {
            chain: chain.into(),
            hash: hex::encode(head.hash),
            key_id: key.public_key().key_id(),
            prev_signature,
            seq: head.seq,
            signature: String::new(),
            time,
        };
        let signature = key.0.sign(&checkpoint.message()?);
        checkpoint.signature = STANDARD.encode(signature.to_bytes());
        Ok(checkpoint)
    }

    /// Checks that `key` signed exactly this checkpoint.
    pub fn verify(&self, key: &PublicKey) -> Result<(), CheckpointError> {
        let trusted = key.key_id();
        if self.key_id != trusted {
            return Err(CheckpointError::WrongKey {
                key_id: self.key_id.clone(),
                trusted,
            });
        }
        let bytes = STANDARD
            .decode(&self.signature)
            .map_err(|e| CheckpointError::SignatureEncoding(e.to_string()))?;
        let signature = Signature::from_slice(&bytes)
            .map_err(|_| CheckpointError::SignatureEncoding(format!("{} bytes", bytes.len())))?;
        // Strict: refuses weak keys and malleable signatures.
        key.0
            .verify_strict(&self.message()?, &signature)
            .map_err(|_| CheckpointError::Mismatch)
    }

    fn message(&self) -> Result<Vec<u8>, CanonicalError> {
        to_canonical(&Signed {
            chain: &self.chain,
            hash: &self.hash,
            key_id: &self.key_id,
            prev_signature: &self.prev_signature,
            seq: self.seq,
            time: self.time,
        })
    }

    /// The checkpoint as a JSON object, built by hand so that it cannot fail.
    fn to_value(&self) -> Value {
        let mut map = Map::new();
        map.insert("chain".into(), self.chain.clone().into());
        map.insert("hash".into(), self.hash.clone().into());
        map.insert("key_id".into(), self.key_id.clone().into());
        map.insert("prev_signature".into(), self.prev_signature.clone().into());
        map.insert("seq".into(), self.seq.into());
        map.insert("signature".into(), self.signature.clone().into());
        map.insert("time".into(), self.time.to_string().into());
        Value::Object(map)
    }

    /// The `checkpoint` event that records this checkpoint in its chain.
    pub fn draft(&self) -> EventDraft {
        EventDraft::new(EventType::Checkpoint, self.time).payload(self.to_value())
    }

    /// The checkpoint an event records; None if it is not a checkpoint event.
    pub fn from_event(event: &Event) -> Option<Result<Checkpoint, CheckpointError>> {
        (event.event_type == EventType::Checkpoint).then(|| {
            Checkpoint::deserialize(&event.payload)
                .map_err(|e| CheckpointError::Malformed(e.to_string()))
        })
    }

    /// The file name in the external directory: sorts by chain, then by seq.
    /// Characters a path could abuse become `_`; the chain is in the content.
    pub fn file_name(&self) -> String {
        let chain: String = self
            .chain
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{chain}-{:020}.json", self.seq)
    }

    pub fn to_file_bytes(&self) -> Vec<u8> {
        format!("{:#}\n", self.to_value()).into_bytes()
    }

    pub fn from_file_bytes(bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
        serde_json::from_slice(bytes).map_err(|e| CheckpointError::Malformed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Chain, Identity, IdentityKind};

    /// RFC 8410's example key pair, checked with `openssl pkey`.
    const RFC_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\n\
        MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
        -----END PRIVATE KEY-----\n";
    const RFC_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\n\
        MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n\
        -----END PUBLIC KEY-----\n";

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn head(seq: u64) -> ChainHead {
        ChainHead { seq, hash: [7; 32] }
    }

    fn signed(key: &CheckpointKey) -> Result<Checkpoint, CheckpointError> {
        Checkpoint::sign(key, "node-a", head(41), Timestamp::from_micros(5), None)
    }

    #[test]
    fn sign_verify_round_trip() -> TestResult {
        let key = CheckpointKey::generate()?;
        let checkpoint = signed(&key)?;
        checkpoint.verify(&key.public_key())?;
        assert_eq!(checkpoint.seq, 41);
        assert_eq!(checkpoint.hash, hex::encode([7u8; 32]));
        assert_eq!(checkpoint.key_id, key.public_key().key_id());
        assert_eq!(checkpoint.key_id.len(), 16);
        Ok(())
    }

    #[test]
    fn pem_round_trips_and_reads_openssl_keys() -> TestResult {
        let key = CheckpointKey::generate()?;
        let again = CheckpointKey::from_pem(&key.to_pem())?;
        assert_eq!(again.public_key(), key.public_key());

        let rfc = CheckpointKey::from_pem(RFC_PRIVATE)?;
        assert_eq!(rfc.to_pem(), RFC_PRIVATE);
        assert_eq!(rfc.public_key(), PublicKey::parse(RFC_PUBLIC)?);
        assert_eq!(rfc.public_key().to_pem(), RFC_PUBLIC);
        Ok(())
    }

    #[test]
    fn public_key_text_round_trips() -> TestResult {
        let public = CheckpointKey::generate()?.public_key();
        let text = public.to_string();
        assert!(text.starts_with("ed25519:"));
        assert_eq!(text.parse::<PublicKey>()?, public);
        assert_eq!(PublicKey::parse(&format!(" {text}\n"))?, public);
        assert!("ed25519:AAAA".parse::<PublicKey>().is_err());
        assert!(public.to_pem().parse::<PublicKey>().is_err());
        Ok(())
    }

    #[test]
    fn debug_never_prints_the_secret() -> TestResult {
        let key = CheckpointKey::from_pem(RFC_PRIVATE)?;
        let debug = format!("{key:?}");
        assert!(debug.contains(&key.public_key().key_id()), "{debug}");
        let seed_hex = "d4ee72dbf913584ad5b6d8f1f769f8ad3afe7c28cbf1d4fbe097a88f44755842";
        assert!(!debug.to_lowercase().contains(seed_hex), "{debug}");
        assert!(!debug.contains("1OZy2/kT"), "{debug}");
        Ok(())
    }

    #[test]
    fn forged_signature_is_refused() -> TestResult {
        let key = CheckpointKey::generate()?;
        let mut checkpoint = signed(&key)?;
        let mut bytes = STANDARD.decode(&checkpoint.signature)?;
        bytes[10] ^= 1;
        checkpoint.signature = STANDARD.encode(&bytes);
        let err = checkpoint.verify(&key.public_key());
        assert!(matches!(err, Err(CheckpointError::Mismatch)), "{err:?}");

        checkpoint.signature = "not base64!".into();
        let err = checkpoint.verify(&key.public_key());
        assert!(matches!(err, Err(CheckpointError::SignatureEncoding(_))));
        Ok(())
    }

    #[test]
    fn every_field_is_signed() -> TestResult {
        let key = CheckpointKey::generate()?;
        let public = key.public_key();
        let good = Checkpoint::sign(
            &key,
            "node-a",
            head(3),
            Timestamp::from_micros(9),
            Some("c2ln".into()),
        )?;
        let edits: [fn(&mut Checkpoint); 5] = [
            |c| c.chain.push('x'),
            |c| c.hash = hex::encode([8u8; 32]),
            |c| c.prev_signature = Some("b3RoZXI=".into()),
            |c| c.seq += 1,
            |c| c.time = Timestamp::from_micros(10),
        ];
        for edit in edits {
            let mut bad = good.clone();
            edit(&mut bad);
            assert!(matches!(
                bad.verify(&public),
                Err(CheckpointError::Mismatch)
            ));
        }
        let mut none = good.clone();
        none.prev_signature = None;
        assert!(none.verify(&public).is_err());
        Ok(())
    }

    #[test]
    fn wrong_key_is_named() -> TestResult {
        let checkpoint = signed(&CheckpointKey::generate()?)?;
        let other = CheckpointKey::generate()?.public_key();
        let err = checkpoint.verify(&other);
        assert!(
            matches!(err, Err(CheckpointError::WrongKey { .. })),
            "{err:?}"
        );
        Ok(())
    }

    #[test]
    fn travels_as_an_event_and_as_a_file() -> TestResult {
        let key = CheckpointKey::generate()?;
        let checkpoint = Checkpoint::sign(
            &key,
            "node/a",
            head(41),
            Timestamp::from_micros(5),
            Some("c2ln".into()),
        )?;
        let draft = checkpoint.draft();
        assert_eq!(draft.payload, serde_json::to_value(&checkpoint)?);
        assert_eq!(draft.event_type, EventType::Checkpoint);
        assert_eq!(draft.time, checkpoint.time);
        assert_eq!((draft.identity, draft.task), (None, None));

        let mut chain = Chain::new("node/a", head(41));
        let sealed = chain.seal(checkpoint.draft())?;
        assert_eq!(sealed.seq, checkpoint.seq + 1);
        let event: Event = serde_json::from_slice(&sealed.body)?;
        let back = Checkpoint::from_event(&event).transpose()?;
        assert_eq!(back.as_ref(), Some(&checkpoint));

        let bytes = checkpoint.to_file_bytes();
        assert_eq!(Checkpoint::from_file_bytes(&bytes)?, checkpoint);
        assert_eq!(checkpoint.file_name(), "node_a-00000000000000000041.json");
        Ok(())
    }

    #[test]
    fn from_event_ignores_other_events_and_refuses_bad_payloads() -> TestResult {
        let identity = Identity {
            claims: Default::default(),
            groups: vec![],
            issuer: "dev".into(),
            kind: IdentityKind::Human,
            subject: "alice".into(),
        };
        let mut chain = Chain::new("c", ChainHead::EMPTY);
        let t = Timestamp::from_micros(0);
        let other = EventDraft::new(EventType::SessionOpened, t).identity(&identity);
        let event: Event = serde_json::from_slice(&chain.seal(other)?.body)?;
        assert!(Checkpoint::from_event(&event).is_none());

        let bad = EventDraft::new(EventType::Checkpoint, t).payload(serde_json::json!({"seq": 1}));
        let event: Event = serde_json::from_slice(&chain.seal(bad)?.body)?;
        assert!(matches!(
            Checkpoint::from_event(&event),
            Some(Err(CheckpointError::Malformed(_)))
        ));
        Ok(())
    }
}
