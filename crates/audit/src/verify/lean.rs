//! A lean parse of an event body for verification: borrows strings instead of
//! copying them and skips the payload, yet refuses every body whose shape
//! parsing into [`crate::Event`] refuses. The payload, which verification
//! never reads, is only checked to be JSON as `IgnoredAny` checks it (which,
//! unlike a `Value`, lets a lone surrogate escape such as `"\ud800"` pass).
//!
//! Verification reads every record, so parsing the payload into a
//! `serde_json::Value` would cost more than hashing it. Bodies laid out as
//! the chain writes them take the faster path in [`super::scan`].

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::scan;
use crate::{EventType, IdentityKind, Timestamp};

/// What verification compares, from either path.
pub(super) struct Fields<'a> {
    pub chain: Str<'a>,
    pub connection: Option<Str<'a>>,
    pub subject: Option<Str<'a>>,
    pub seq: u64,
    pub session: Option<Str<'a>>,
    pub task: Option<Str<'a>>,
    /// Microseconds since the epoch.
    pub time: i64,
    pub event_type: EventType,
}

pub(super) fn parse(body: &[u8]) -> Result<Fields<'_>, serde_json::Error> {
    // The full parse refuses invalid UTF-8 anywhere; `IgnoredAny` does not
    // look inside strings.
    let text = std::str::from_utf8(body)
        .map_err(|e| serde_json::Error::custom(format!("body is not UTF-8: {e}")))?;
    match scan::fields(text) {
        Some(fields) => Ok(fields),
        None => parse_with_serde(text),
    }
}

/// The general path, for bodies the scanner leaves alone.
pub(super) fn parse_with_serde(text: &str) -> Result<Fields<'_>, serde_json::Error> {
    let event: LeanEvent<'_> = serde_json::from_str(text)?;
    Ok(Fields {
        chain: event.chain,
        connection: event.connection,
        subject: event.identity.map(|i| i.subject),
        seq: event.seq,
        session: event.session,
        task: event.task,
        time: event.time.0,
        event_type: event.event_type,
    })
}

/// An event body as serde reads it, keeping what verification compares.
/// Declared in the order of [`crate::Event`]'s fields so that the two accept
/// the same input.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LeanEvent<'a> {
    #[serde(borrow)]
    chain: Str<'a>,
    #[serde(borrow)]
    connection: Option<Str<'a>>,
    #[serde(borrow)]
    identity: Option<LeanIdentity<'a>>,
    #[serde(borrow, default, rename = "node")]
    _node: Option<Str<'a>>,
    #[serde(rename = "payload")]
    _payload: IgnoredAny,
    seq: u64,
    #[serde(borrow)]
    session: Option<Str<'a>>,
    #[serde(borrow)]
    task: Option<Str<'a>>,
    time: Micros,
    #[serde(rename = "type")]
    event_type: EventType,
    #[serde(rename = "v")]
    _v: u32,
}

/// [`crate::Identity`] with only the subject kept, the rest checked for shape.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LeanIdentity<'a> {
    #[serde(default, rename = "claims")]
    _claims: StrMap,
    #[serde(default, rename = "groups")]
    _groups: StrSeq,
    #[serde(borrow, rename = "issuer")]
    _issuer: Str<'a>,
    #[serde(rename = "kind")]
    _kind: IdentityKind,
    #[serde(borrow)]
    subject: Str<'a>,
}

/// A JSON string, borrowed from the body unless it had escapes.
pub(super) struct Str<'a>(pub(super) Cow<'a, str>);

impl Str<'_> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(V(PhantomData))
    }
}

/// Checks a map of strings to strings, keeping nothing.
#[derive(Default)]
struct StrMap;

impl<'de> Deserialize<'de> for StrMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrMap, A::Error> {
                while map.next_entry::<Str<'de>, Str<'de>>()?.is_some() {}
                Ok(StrMap)
            }
        }
        deserializer.deserialize_map(V)
    }
}

/// Checks a list of strings, keeping nothing.
#[derive(Default)]
struct StrSeq;

impl<'de> Deserialize<'de> for StrSeq {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrSeq;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrSeq, A::Error> {
                while seq.next_element::<Str<'de>>()?.is_some() {}
                Ok(StrSeq)
            }
        }
        deserializer.deserialize_seq(V)
    }
}

/// An event time as microseconds. The canonical form is read directly; any
/// other form goes through [`Timestamp::parse`], as the full parse does.
struct Micros(i64);

impl<'de> Deserialize<'de> for Micros {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Str::deserialize(deserializer)?;
        match canonical_micros(text.as_str().as_bytes()) {
            Some(micros) => Ok(Micros(micros)),
            None => Timestamp::parse(text.as_str())
                .map(|t| Micros(t.as_micros()))
                .map_err(D::Error::custom),
        }
    }
}

pub(super) use crate::timestamp::canonical_micros;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Event;

    const GOOD: &str = r#"{"chain":"c","connection":null,"identity":{"claims":{"repo":"a/b"},"groups":["dba"],"issuer":"dev","kind":"human","subject":"al\u00e9"},"payload":{"x":[1,{"y":null}]},"seq":3,"session":"s","task":"t","time":"2025-11-25T10:31:29.000123Z","type":"task.ended","v":1}"#;

    /// Bodies the full parse refuses: the lean parse must refuse them too.
    #[test]
    fn refuses_what_the_full_parse_refuses() {
        let edits: &[(&str, &str)] = &[
            (r#""v":1"#, r#""v":1,"extra":2"#),
            (r#""seq":3,"#, ""),
            (r#""chain":"c","#, ""),
            (r#","v":1"#, ""),
            (r#""payload":{"x":[1,{"y":null}]},"#, ""),
            (r#""time":"2025-11-25T10:31:29.000123Z","#, ""),
            (r#""type":"task.ended""#, r#""type":"task.ended.not""#),
            (r#""seq":3"#, r#""seq":-3"#),
            (r#""seq":3"#, r#""seq":"3""#),
            (r#""chain":"c""#, r#""chain":null"#),
            (r#""task":"t""#, r#""task":7"#),
            (r#""v":1"#, r#""v":1.5"#),
            (r#"000123Z"#, r#"000123"#),
            (r#"2025-11-25T"#, r#"2025-02-30T"#),
            (r#"10:31:29"#, r#"24:31:29"#),
            (r#""subject":"al\u00e9""#, ""),
            (r#""kind":"human""#, r#""kind":"robot""#),
            (r#""issuer":"dev""#, r#""issuer":"dev","role":"x""#),
            (r#""groups":["dba"]"#, r#""groups":[1]"#),
            (r#""claims":{"repo":"a/b"}"#, r#""claims":{"repo":1}"#),
            (r#""claims":{"repo":"a/b"}"#, r#""claims":null"#),
            (r#""identity":{"#, r#""identity":7,"x":{"#),
            (r#""v":1}"#, r#""v":1}}"#),
            (r#""v":1}"#, r#""v":1} x"#),
            (r#""seq":3"#, r#""seq":3,"seq":3"#),
        ];
        assert!(parse(GOOD.as_bytes()).is_ok());
        for (from, to) in edits {
            assert!(GOOD.contains(from), "{from}");
            let body = GOOD.replacen(from, to, 1);
            let full = serde_json::from_str::<Event>(&body);
            let lean = parse(body.as_bytes());
            assert!(full.is_err(), "the full parse accepts {body}");
            assert!(lean.is_err(), "the lean parse accepts {body}");
        }
        // Inside the payload, where `IgnoredAny` would not look.
        let mut not_utf8 = GOOD.replacen(r#"{"y":null}"#, r#""zz""#, 1).into_bytes();
        let at = not_utf8.windows(2).position(|w| w == b"zz").unwrap_or(0);
        not_utf8[at] = 0xff;
        assert!(serde_json::from_slice::<Event>(&not_utf8).is_err());
        assert!(parse(&not_utf8).is_err());
    }

    /// And accepts what it accepts, with the same values.
    #[test]
    fn accepts_what_the_full_parse_accepts() -> Result<(), serde_json::Error> {
        let variants = [
            GOOD.to_owned(),
            GOOD.replacen(r#""claims":{"repo":"a/b"},"groups":["dba"],"#, "", 1),
            GOOD.replacen(r#""connection":null,"#, "", 1),
            GOOD.replacen(
                "2025-11-25T10:31:29.000123Z",
                "2025-11-25T12:31:29.000123+02:00",
                1,
            ),
            GOOD.replacen("2025-11-25T10:31:29.000123Z", "2025-11-25", 1),
            GOOD.replacen(r#""chain":"c""#, r#""chain":"a\"b\n""#, 1),
            GOOD.replacen(r#""payload":{"x":[1,{"y":null}]}"#, r#""payload":1.5"#, 1),
            GOOD.replace(',', " ,\n"),
        ];
        for body in variants {
            let full: Event = serde_json::from_str(&body)?;
            let lean = parse(body.as_bytes())?;
            assert_eq!(lean.chain.as_str(), full.chain);
            assert_eq!(lean.seq, full.seq);
            assert_eq!(lean.time, full.time.as_micros());
            assert_eq!(lean.event_type, full.event_type);
            assert_eq!(lean.task.as_ref().map(Str::as_str), full.task.as_deref());
            assert_eq!(
                lean.connection.as_ref().map(Str::as_str),
                full.connection.as_deref()
            );
            assert_eq!(
                lean.subject.as_ref().map(Str::as_str),
                full.identity.as_ref().map(|i| i.subject.as_str())
            );
        }
        Ok(())
    }

    #[test]
    fn canonical_times_read_as_the_general_parser_reads_them() {
        let mut micros = -1_000_000_000_000_000i64;
        // Steps that land on many different dates, leap days included.
        while micros < 250_000_000_000_000_000 {
            let text = Timestamp::from_micros(micros).to_string();
            assert_eq!(canonical_micros(text.as_bytes()), Some(micros), "{text}");
            micros += 7_777_777_777_777;
        }
        for text in [
            "2024-02-29T23:59:59.999999Z",
            "2000-02-29T00:00:00.000000Z",
            "1970-01-01T00:00:00.000000Z",
            "0001-01-01T00:00:00.000000Z",
            "9999-12-31T23:59:59.999999Z",
        ] {
            let general = Timestamp::parse(text).ok().map(Timestamp::as_micros);
            assert_eq!(canonical_micros(text.as_bytes()), general, "{text}");
        }
        for text in [
            "2023-02-29T00:00:00.000000Z",
            "1900-02-29T00:00:00.000000Z",
            "2023-04-31T00:00:00.000000Z",
            "2023-13-01T00:00:00.000000Z",
            "2023-01-01T00:60:00.000000Z",
            "2023-01-01T00:00:60.000000Z",
            "2023-01-01T00:00:00.00000aZ",
            "2023-01-01 00:00:00.000000Z",
        ] {
            assert_eq!(canonical_micros(text.as_bytes()), None, "{text}");
        }
    }
}
