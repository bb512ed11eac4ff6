//! The `webhook` sink: POSTs JSON signed per the Standard Webhooks spec:
//! `webhook-id`, `webhook-timestamp` and `webhook-signature`, an
//! HMAC-SHA256 over `id.timestamp.body` with each configured `whsec_`
//! secret (several during a rotation, space-separated).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use taskgate_policy::Secret;
use taskgate_policy::config::Sink;

use super::{Deliver, Delivery, Failure, Outgoing};

pub struct Webhook {
    http: reqwest::Client,
    url: String,
    /// The decoded key of each secret.
    keys: Vec<Vec<u8>>,
    park_rejected: bool,
}

/// Shortest signing key accepted: an empty or short key lets anyone forge
/// deliveries (Standard Webhooks asks for 24 to 64 bytes).
const MIN_KEY_BYTES: usize = 24;

fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = STANDARD
        .decode(encoded)
        .map_err(|_| "a webhook secret must be whsec_ followed by base64".to_owned())?;
    if key.len() < MIN_KEY_BYTES {
        return Err(format!(
            "a webhook secret's key must be at least {MIN_KEY_BYTES} random bytes (this one has {}): make one with `openssl rand -base64 32` and prefix it with whsec_",
            key.len()
        ));
    }
    Ok(key)
}

impl Webhook {
    pub fn new(config: &Sink) -> Result<Self, String> {
        let url = config.url.clone().ok_or("no url")?;
        let reference = config.secret_ref().ok_or("no secret")?;
        let secret: Secret = crate::secrets::resolve(&reference).map_err(|e| e.to_string())?;
        let keys = secret
            .expose()
            .split_whitespace()
            .map(decode_secret)
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err("the webhook secret is empty".into());
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout.0)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            http,
            url,
            keys,
            park_rejected: config.park_rejected,
        })
    }

    /// `v1,<base64 signature>` for each key, space-separated.
    fn signature(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        self.keys
            .iter()
            .filter_map(|key| {
                let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
                mac.update(format!("{id}.{timestamp}.").as_bytes());
                mac.update(body);
                Some(format!(
                    "v1,{}",
                    STANDARD.encode(mac.finalize().into_bytes())
                ))
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    async fn post(&self, events: &[Outgoing]) -> Result<(), Failure> {
        let (id, body) = match events {
            [one] => (one.id.clone(), serde_json::to_vec(&one.json)),
            [first, .., last] => (
                format!("{}-{}", first.id, last.seq),
                serde_json::to_vec(&events.iter().map(|e| &e.json).collect::<Vec<_>>()),
            ),
            [] => return Ok(()),
        };
        let body = body.map_err(|e| Failure::Retry(e.to_string()))?;
        let timestamp = taskgate_audit::Timestamp::now().as_micros() / 1_000_000;
        let response = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", self.signature(&id, timestamp, &body))
            .body(body)
            .send()
            .await
            .map_err(|e| Failure::Retry(format!("{}: {e}", self.url)))?;
        let status = response.status().as_u16();
        match status {
            200..=299 => Ok(()),
            408 | 429 => Err(Failure::Retry(format!("the receiver answered {status}"))),
            400..=499 if self.park_rejected => {
                Err(Failure::Park(format!("the receiver answered {status}")))
            }
            _ => Err(Failure::Retry(format!("the receiver answered {status}"))),
        }
    }
}

impl Deliver for Webhook {
    fn deliver<'a>(&'a mut self, events: &'a [Outgoing]) -> Delivery<'a> {
        Box::pin(self.post(events))
    }
}

#[cfg(test)]
mod tests {
    use super::decode_secret;

    #[test]
    fn short_and_empty_keys_are_refused() {
        // `whsec_` alone is an empty HMAC key: anyone could sign.
        for weak in ["whsec_", "whsec_c2hvcnQ="] {
            let error = decode_secret(weak).err().unwrap_or_default();
            assert!(error.contains("at least 24"), "{weak}: {error}");
        }
        assert_eq!(
            decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").map(|k| k.len()),
            Ok(24)
        );
    }
}
