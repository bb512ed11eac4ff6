//! The shape in which events leave the gateway (sinks, and the same for any
//! consumer): the event exactly as recorded, plus `id` and `hash`.

use serde_json::Value;

/// The exported JSON of a stored event: its hashed body's fields, plus `id`
/// (`<chain>:<seq>`, the same on every delivery of it, so receivers and
/// JetStream can drop duplicates) and `hash` (hex), with which anyone can
/// check the event against the chain.
pub fn exported(body: &[u8], hash: &[u8]) -> Result<Value, serde_json::Error> {
    let mut value: Value = serde_json::from_slice(body)?;
    if let Value::Object(fields) = &mut value {
        let id = format!(
            "{}:{}",
            fields.get("chain").and_then(Value::as_str).unwrap_or(""),
            fields.get("seq").and_then(Value::as_u64).unwrap_or(0)
        );
        fields.insert("id".into(), Value::String(id));
        fields.insert("hash".into(), Value::String(hex::encode(hash)));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Chain, ChainHead, EventDraft, EventType, Timestamp};

    #[test]
    fn an_exported_event_is_the_recorded_one_with_its_id_and_hash()
    -> Result<(), Box<dyn std::error::Error>> {
        let mut chain = Chain::new("node-1", ChainHead::EMPTY);
        let sealed = chain
            .seal(EventDraft::new(EventType::TaskEnded, Timestamp::from_micros(0)).task("t1"))?;
        let value = exported(&sealed.body, &sealed.hash)?;
        assert_eq!(value["id"], "node-1:1");
        assert_eq!(value["hash"], hex::encode(sealed.hash));
        assert_eq!(value["type"], "task.ended");
        assert_eq!(value["task"], "t1");
        Ok(())
    }
}
