//! Canonical JSON: object keys sorted by their UTF-8 bytes, no insignificant
//! whitespace, integers only (no floats), strings escaped as serde_json does.
//!
//! Written by hand (a few lines over serde) rather than relying on
//! serde_json's map order, which a `preserve_order` feature enabled anywhere in
//! the build would silently change, and which would break every hash.

use serde::ser::{Error as _, SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
#[error("event cannot be encoded canonically: {0}")]
pub struct CanonicalError(String);

/// Serializes any JSON value with sorted keys; floats are refused.
pub(crate) struct Sorted<'a>(pub &'a Value);

impl Serialize for Sorted<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => serializer.serialize_unit(),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    serializer.serialize_i64(i)
                } else if let Some(u) = n.as_u64() {
                    serializer.serialize_u64(u)
                } else {
                    Err(S::Error::custom(
                        "floating-point numbers have no canonical form",
                    ))
                }
            }
            Value::String(s) => serializer.serialize_str(s),
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Sorted(item))?;
                }
                seq.end()
            }
            Value::Object(map) => {
                let mut out = serializer.serialize_map(Some(map.len()))?;
                let in_order = map
                    .keys()
                    .zip(map.keys().skip(1))
                    .all(|(a, b)| a.as_bytes() < b.as_bytes());
                if in_order {
                    // serde_json's own map keeps keys sorted, unless a
                    // `preserve_order` feature is on somewhere in the build:
                    // checked, not assumed, and no sort is needed.
                    for (key, value) in map {
                        out.serialize_entry(key, &Sorted(value))?;
                    }
                } else {
                    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                    entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                    for (key, value) in entries {
                        out.serialize_entry(key, &Sorted(value))?;
                    }
                }
                out.end()
            }
        }
    }
}

/// `serialize_with` adapter for a `Value` field inside a canonical struct.
pub(crate) fn sorted<S: Serializer>(value: &Value, serializer: S) -> Result<S::Ok, S::Error> {
    Sorted(value).serialize(serializer)
}

/// The canonical bytes of any JSON value.
pub fn canonical_json(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    serde_json::to_vec(&Sorted(value)).map_err(|e| CanonicalError(e.to_string()))
}

pub(crate) fn to_canonical<T: Serialize>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    // Room for a typical event at once: growing from serde_json's default
    // took several copies per event.
    let mut out = Vec::with_capacity(1024);
    serde_json::to_writer(&mut out, value).map_err(|e| CanonicalError(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_keys_at_every_depth_and_drops_whitespace() {
        let v = json!({"b": 1, "a": {"z": [true, null], "y": "x"}});
        let bytes = canonical_json(&v).ok();
        assert_eq!(
            bytes.as_deref(),
            Some(&br#"{"a":{"y":"x","z":[true,null]},"b":1}"#[..])
        );
    }

    #[test]
    fn refuses_floats() {
        assert!(canonical_json(&json!({"x": 1.5})).is_err());
    }
}
