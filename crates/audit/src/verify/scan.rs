//! The fast path of the lean parse: reads a body laid out exactly as
//! [`crate::Chain`] writes it (canonical keys in order, no whitespace) with a
//! hand-written scanner, several times faster than serde's token machinery.
//!
//! It may only ever accept what the serde path accepts, with the same values:
//! anything unusual (escapes in a field it keeps, floats, deep nesting,
//! another layout) returns None and the serde path decides.

use std::borrow::Cow;
use std::str::FromStr;

use super::lean::{Fields, Str, canonical_micros};
use crate::EventType;

/// Well below serde_json's recursion limit, so that the serde path, not this
/// one, refuses what is too deep.
const MAX_DEPTH: u32 = 100;

/// Reads a canonical body; None when it is not plainly canonical.
pub(super) fn fields(body: &str) -> Option<Fields<'_>> {
    let mut c = Cursor { text: body, at: 0 };
    c.literal("{\"chain\":")?;
    let chain = c.plain_string()?;
    c.literal(",\"connection\":")?;
    let connection = c.nullable()?;
    c.literal(",\"identity\":")?;
    let subject = c.identity()?;
    c.literal(",\"payload\":")?;
    c.value(1)?;
    c.literal(",\"seq\":")?;
    let seq = c.unsigned()?;
    c.literal(",\"session\":")?;
    let session = c.nullable()?;
    c.literal(",\"task\":")?;
    let task = c.nullable()?;
    c.literal(",\"time\":")?;
    let time = canonical_micros(c.plain_string()?.as_bytes())?;
    c.literal(",\"type\":")?;
    let event_type = EventType::from_str(c.plain_string()?).ok()?;
    c.literal(",\"v\":")?;
    u32::try_from(c.unsigned()?).ok()?;
    c.literal("}")?;
    if c.at != body.len() {
        return None;
    }
    Some(Fields {
        chain: borrowed(chain),
        connection: connection.map(borrowed),
        subject: subject.map(borrowed),
        seq,
        session: session.map(borrowed),
        task: task.map(borrowed),
        time,
        event_type,
    })
}

fn borrowed(text: &str) -> Str<'_> {
    Str(Cow::Borrowed(text))
}

struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    #[inline]
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.at).copied()
    }

    #[inline]
    fn literal(&mut self, expected: &str) -> Option<()> {
        let end = self.at + expected.len();
        (self.bytes().get(self.at..end)? == expected.as_bytes()).then(|| self.at = end)
    }

    /// A string without escapes, whose content is kept.
    #[inline]
    fn plain_string(&mut self) -> Option<&'a str> {
        self.literal("\"")?;
        let start = self.at;
        let end = special(self.bytes(), start);
        if self.bytes().get(end) != Some(&b'"') {
            return None;
        }
        self.at = end + 1;
        self.text.get(start..end)
    }

    fn nullable(&mut self) -> Option<Option<&'a str>> {
        if self.peek() == Some(b'n') {
            self.literal("null").map(|()| None)
        } else {
            self.plain_string().map(Some)
        }
    }

    /// Any string, checked for valid escapes and skipped.
    #[inline]
    fn string(&mut self) -> Option<()> {
        self.literal("\"")?;
        loop {
            self.at = special(self.bytes(), self.at);
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return Some(());
                }
                b'\\' => self.escape()?,
                _ => return None,
            }
        }
    }

    fn escape(&mut self) -> Option<()> {
        let escaped = *self.bytes().get(self.at + 1)?;
        self.at += 2;
        match escaped {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(()),
            b'u' => {
                let hex = self.text.get(self.at..self.at + 4)?;
                let code = u16::from_str_radix(hex, 16).ok()?;
                // Surrogates are judged differently by different parsers.
                if (0xd800..0xe000).contains(&code) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                self.at += 4;
                Some(())
            }
            _ => None,
        }
    }

    /// A non-negative integer without leading zeros.
    fn unsigned(&mut self) -> Option<u64> {
        let start = self.at;
        let mut n: u64 = 0;
        while let Some(digit) = self.peek().filter(u8::is_ascii_digit) {
            n = n.checked_mul(10)?.checked_add(u64::from(digit - b'0'))?;
            self.at += 1;
        }
        let digits = self.at - start;
        let leading_zero = digits > 1 && self.bytes().get(start) == Some(&b'0');
        (digits > 0 && !leading_zero && !self.fraction_follows()).then_some(n)
    }

    /// Floats are left to serde, which knows their every form.
    fn fraction_follows(&self) -> bool {
        matches!(self.peek(), Some(b'.' | b'e' | b'E'))
    }

    /// `null`, or an identity with every field in canonical order; returns
    /// the subject.
    fn identity(&mut self) -> Option<Option<&'a str>> {
        if self.peek() == Some(b'n') {
            return self.literal("null").map(|()| None);
        }
        self.literal("{\"claims\":{")?;
        if self.peek() != Some(b'}') {
            loop {
                self.string()?;
                self.literal(":")?;
                self.string()?;
                if self.literal(",").is_none() {
                    break;
                }
            }
        }
        self.literal("},\"groups\":[")?;
        if self.peek() != Some(b']') {
            loop {
                self.string()?;
                if self.literal(",").is_none() {
                    break;
                }
            }
        }
        self.literal("],\"issuer\":")?;
        self.string()?;
        self.literal(",\"kind\":")?;
        if self.literal("\"agent\"").is_none() {
            self.literal("\"human\"")?;
        }
        self.literal(",\"subject\":")?;
        let subject = self.plain_string()?;
        self.literal("}")?;
        Some(Some(subject))
    }

    /// Any JSON value without whitespace or floats, checked and skipped.
    fn value(&mut self, depth: u32) -> Option<()> {
        match self.peek()? {
            b'"' => self.string(),
            b'{' => self.container(depth, b'}', |c| {
                c.string()?;
                c.literal(":")?;
                c.value(depth + 1)
            }),
            b'[' => self.container(depth, b']', |c| c.value(depth + 1)),
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'n' => self.literal("null"),
            b'-' => {
                self.at += 1;
                self.unsigned().map(drop)
            }
            b'0'..=b'9' => self.unsigned().map(drop),
            _ => None,
        }
    }

    fn container(
        &mut self,
        depth: u32,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        if depth >= MAX_DEPTH {
            return None;
        }
        self.at += 1;
        if self.peek() == Some(close) {
            self.at += 1;
            return Some(());
        }
        loop {
            item(self)?;
            match self.peek()? {
                b',' => self.at += 1,
                b if b == close => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }
}

/// The index of the first `"`, `\` or control character at or after
/// `from`, or the length: eight bytes at a time, as strings are most of a body.
#[inline]
fn special(bytes: &[u8], from: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut at = from;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let Ok(chunk) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let word = u64::from_le_bytes(chunk);
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        // A byte is flagged when it is zero (or below 0x20); bytes of 0x80
        // and up never are.
        let flagged = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (word.wrapping_sub(ONES * 0x20) & !word);
        let flagged = flagged & HIGH;
        if flagged != 0 {
            // Borrows only run upwards: the lowest flagged byte is a real one.
            return at + (flagged.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while let Some(&b) = bytes.get(at) {
        if b == b'"' || b == b'\\' || b < 0x20 {
            break;
        }
        at += 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Chain, ChainHead, EventDraft, Identity, IdentityKind, Timestamp};

    fn sealed(draft: EventDraft) -> Result<String, Box<dyn std::error::Error>> {
        let mut chain = Chain::new(
            "node-a",
            ChainHead {
                seq: 41,
                hash: [0; 32],
            },
        );
        Ok(String::from_utf8(chain.seal(draft)?.body)?)
    }

    #[test]
    fn reads_what_the_chain_writes() -> Result<(), Box<dyn std::error::Error>> {
        let identity = Identity {
            claims: [
                ("repo".into(), "a \u{e9} \"b\"".into()),
                ("x".into(), String::new()),
            ]
            .into(),
            groups: vec!["dba".into(), "ops\n".into()],
            issuer: "https://issuer.example".into(),
            kind: IdentityKind::Agent,
            subject: "repo:a/b:ref:refs/heads/main".into(),
        };
        let payload = serde_json::json!({
            "sql": "SELECT 1\n  FROM \"t\" WHERE x = '\u{1F600}' -- \\ \u{1}",
            "params": [-1, 0, 18_446_744_073_709_551_615u64, true, false, null, "", [], {}],
            "nested": {"a": [[[{"b": []}]]]},
        });
        let draft = EventDraft::new(
            EventType::CommandStarted,
            Timestamp::from_micros(1_764_066_689_000_123),
        )
        .identity(&identity)
        .task("tsk_1")
        .session("ses_1")
        .connection("orders-db")
        .payload(payload);
        let body = sealed(draft)?;
        let read = fields(&body).ok_or("the scanner refused a canonical body")?;
        assert_eq!(read.chain.as_str(), "node-a");
        assert_eq!(read.seq, 42);
        assert_eq!(read.time, 1_764_066_689_000_123);
        assert_eq!(read.event_type, EventType::CommandStarted);
        assert_eq!(
            read.subject.as_ref().map(Str::as_str),
            Some(identity.subject.as_str())
        );
        assert_eq!(read.task.as_ref().map(Str::as_str), Some("tsk_1"));
        assert_eq!(read.session.as_ref().map(Str::as_str), Some("ses_1"));
        assert_eq!(read.connection.as_ref().map(Str::as_str), Some("orders-db"));

        let bare = sealed(EventDraft::new(
            EventType::TaskEnded,
            Timestamp::from_micros(0),
        ))?;
        let plain = fields(&bare).ok_or("the scanner refused a bare body")?;
        assert!(plain.subject.is_none() && plain.task.is_none());
        Ok(())
    }

    #[test]
    fn leaves_anything_unusual_to_serde() -> Result<(), Box<dyn std::error::Error>> {
        let body = sealed(
            EventDraft::new(EventType::TaskEnded, Timestamp::from_micros(0))
                .task("t")
                .payload(serde_json::json!({"a": [1, "x"]})),
        )?;
        assert!(fields(&body).is_some());
        let edits = [
            (r#""task":"t""#, r#""task":"t\u0041""#),
            (r#""task":"t""#, r#""task": "t""#),
            (r#"[1,"x"]"#, r#"[1.5,"x"]"#),
            (r#"[1,"x"]"#, r#"[1e3,"x"]"#),
            (r#"[1,"x"]"#, r#"[01,"x"]"#),
            (r#"[1,"x"]"#, r#"[1,"\ud800"]"#),
            (r#"[1,"x"]"#, r#"[1,"\x"]"#),
            (r#"[1,"x"]"#, r#"[1,"x",]"#),
            (r#"[1,"x"]"#, r#"[1 "x"]"#),
            (r#"[1,"x"]"#, r#"[1,"x"}"#),
            (r#"[1,"x"]"#, r#"[1,'x']"#),
            (r#"[1,"x"]"#, "[1,\"x\t\"]"),
            (r#"[1,"x"]"#, r#"[1,nul]"#),
            (r#""v":1}"#, r#""v":1} "#),
            (r#""v":1}"#, r#""v":4294967296}"#),
            (r#""seq":42"#, r#""seq":18446744073709551616"#),
            (r#""type":"task.ended""#, r#""type":"task.over""#),
            (
                r#""time":"1970-01-01T00:00:00.000000Z""#,
                r#""time":"1970-01-01""#,
            ),
        ];
        for (from, to) in edits {
            assert!(body.contains(from), "{from}");
            let edited = body.replacen(from, to, 1);
            assert!(fields(&edited).is_none(), "{edited}");
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let edited = body.replacen(r#"[1,"x"]"#, &deep, 1);
        assert!(fields(&edited).is_none());
        Ok(())
    }

    /// Every one-byte edit of canonical bodies: whatever the scanner still
    /// accepts, serde must accept with the same values, and the lean parse
    /// must refuse whatever the full parse refuses.
    #[test]
    fn never_accepts_what_serde_refuses() -> Result<(), Box<dyn std::error::Error>> {
        let identity = Identity {
            claims: [
                ("repo".into(), "a/b".into()),
                ("n".into(), "\u{e9}\"x".into()),
            ]
            .into(),
            groups: vec!["dba".into()],
            issuer: "dev".into(),
            kind: IdentityKind::Human,
            subject: "alice".into(),
        };
        let bodies = [
            sealed(
                EventDraft::new(EventType::CommandStarted, Timestamp::from_micros(1_000_001))
                    .identity(&identity)
                    .task("t1")
                    .session("s")
                    .payload(serde_json::json!({"sql": "SELECT '\n' \"x\"", "p": [-10, true, null, {"a": []}]})),
            )?,
            sealed(EventDraft::new(EventType::TaskEnded, Timestamp::from_micros(0)))?,
        ];
        let replacements = b"\"\\{}[],:-0129atnfeu. \x01\xc3";
        let mut accepted = 0;
        for body in &bodies {
            let bytes = body.as_bytes();
            for at in 0..bytes.len() {
                let mut edits = vec![[&bytes[..at], &bytes[at + 1..]].concat()];
                for &b in replacements {
                    edits.push([&bytes[..at], &[b], &bytes[at + 1..]].concat());
                    edits.push([&bytes[..at], &[b], &bytes[at..]].concat());
                }
                for edit in edits {
                    // And the lean parse refuses what the full parse refuses.
                    if serde_json::from_slice::<crate::Event>(&edit).is_err() {
                        let lean = super::super::lean::parse(&edit);
                        assert!(lean.is_err(), "{}", String::from_utf8_lossy(&edit));
                    }
                    let Ok(text) = std::str::from_utf8(&edit) else {
                        continue;
                    };
                    let Some(fast) = fields(text) else {
                        continue;
                    };
                    accepted += 1;
                    let slow = super::super::lean::parse_with_serde(text)
                        .map_err(|e| format!("serde refuses {text}: {e}"))?;
                    assert_eq!(fast.chain.as_str(), slow.chain.as_str(), "{text}");
                    assert_eq!(
                        (fast.seq, fast.time, fast.event_type),
                        (slow.seq, slow.time, slow.event_type),
                        "{text}"
                    );
                    let strs = |f: &Fields<'_>| {
                        [&f.connection, &f.subject, &f.session, &f.task]
                            .map(|s| s.as_ref().map(|s| s.as_str().to_owned()))
                    };
                    assert_eq!(strs(&fast), strs(&slow), "{text}");
                }
            }
        }
        assert!(accepted > 100, "only {accepted} edits were accepted");
        Ok(())
    }

    #[test]
    fn finds_special_bytes_in_every_position() {
        for len in 0..40 {
            for at in 0..len {
                for special_byte in [b'"', b'\\', 0x00, 0x1f] {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = special_byte;
                    assert_eq!(special(&bytes, 0), at, "{len} {at} {special_byte}");
                }
                let mut bytes = "é".repeat(len).into_bytes();
                bytes.truncate(len);
                assert_eq!(special(&bytes, 0), len);
            }
            assert_eq!(special(&vec![b' '; len], 0), len);
        }
    }
}
