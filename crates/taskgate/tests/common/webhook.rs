//! A real webhook receiver for tests: verifies every delivery's signature
//! with the `standardwebhooks` crate (an independent implementation) and
//! keeps what arrived, in order.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;

/// What the receiver saw: every delivery's id and event, in arrival order.
#[derive(Default)]
pub struct Received {
    pub deliveries: Vec<(String, Value)>,
    /// Events of this type are answered 400.
    pub reject_type: Option<String>,
    pub delay: Duration,
}

pub struct Receiver {
    pub received: Arc<Mutex<Received>>,
    _runtime: tokio::runtime::Runtime,
}

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

async fn hook(
    State((received, verifier)): State<(Arc<Mutex<Received>>, Arc<standardwebhooks::Webhook>)>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    // Checked the way any Standard Webhooks receiver checks it.
    if verifier.verify(&body, &headers).is_err() {
        return StatusCode::UNAUTHORIZED;
    }
    let event: Value = serde_json::from_slice(&body).unwrap();
    let delay = received.lock().unwrap().delay;
    tokio::time::sleep(delay).await;
    let mut r = received.lock().unwrap();
    if r.reject_type.as_deref() == event["type"].as_str() {
        return StatusCode::BAD_REQUEST;
    }
    let id = headers["webhook-id"].to_str().unwrap().to_owned();
    assert_eq!(event["id"], id.as_str(), "the webhook id is the event's id");
    r.deliveries.push((id, event));
    StatusCode::NO_CONTENT
}

impl Receiver {
    pub fn start(port: u16, reject_type: Option<&str>, delay: Duration) -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let received = Arc::new(Mutex::new(Received {
            reject_type: reject_type.map(str::to_owned),
            delay,
            ..Received::default()
        }));
        let verifier = Arc::new(standardwebhooks::Webhook::new(SECRET).unwrap());
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state((Arc::clone(&received), verifier));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
            .unwrap();
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            received,
            _runtime: runtime,
        }
    }

    pub fn events(&self) -> Vec<(String, Value)> {
        self.received.lock().unwrap().deliveries.clone()
    }
}

/// Sequence numbers delivered, once each, and whether each duplicate is
/// the same event under the same id.
pub fn distinct_seqs(deliveries: &[(String, Value)]) -> Vec<u64> {
    let mut by_id: BTreeMap<u64, (String, Value)> = BTreeMap::new();
    for (id, event) in deliveries {
        let seq = event["seq"].as_u64().unwrap();
        if let Some((seen_id, seen)) = by_id.get(&seq) {
            assert_eq!((seen_id, seen), (id, event), "a duplicate differs");
        }
        by_id.insert(seq, (id.clone(), event.clone()));
    }
    by_id.keys().copied().collect()
}

/// The config of a webhook sink `siem` posting to the receiver on `port`,
/// its signing secrets (a second one, as in a rotation, then [`SECRET`])
/// written to a file in `secret_dir`.
pub fn sink_config(port: u16, secret_dir: &std::path::Path) -> String {
    let secret = secret_dir.join("whsec");
    std::fs::write(
        &secret,
        format!("whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24= {SECRET}"),
    )
    .unwrap();
    format!(
        r#"
[[sinks]]
name = "siem"
kind = "webhook"
url = "http://127.0.0.1:{port}/hook"
secret_file = "{}"
timeout = "2s"
"#,
        secret.display()
    )
}
