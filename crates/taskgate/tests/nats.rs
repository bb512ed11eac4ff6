//! The NATS sink against the real server on 127.0.0.1:4222 (JetStream):
//! every event lands in the stream exactly once, even when the gateway
//! publishes everything again after losing its cursor, thanks to the
//! message ids.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::TestGateway;
use serde_json::Value;

const SERVER: &str = "nats://127.0.0.1:4222";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The ids of every message in `stream`, in stream order.
fn stream_ids(stream: &str) -> Vec<String> {
    runtime().block_on(async {
        let client = async_nats::connect(SERVER).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let Ok(mut stream) = js.get_stream(stream).await else {
            return Vec::new();
        };
        let count = stream.info().await.unwrap().state.messages;
        let mut ids = Vec::new();
        for seq in 1..=count {
            let message = stream.get_raw_message(seq).await.unwrap();
            let event: Value = serde_json::from_slice(&message.payload).unwrap();
            let header = message
                .headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .map(|v| v.to_string())
                .unwrap_or_default();
            assert_eq!(
                event["id"],
                header.as_str(),
                "the message id is the event's id"
            );
            ids.push(header);
        }
        ids
    })
}

fn delete_stream(stream: &str) {
    runtime().block_on(async {
        let client = async_nats::connect(SERVER).await.unwrap();
        let _ = async_nats::jetstream::new(client)
            .delete_stream(stream)
            .await;
    });
}

fn store_ids(gw: &TestGateway) -> Vec<String> {
    gw.event_bodies()
        .iter()
        .map(|b| {
            let e: Value = serde_json::from_str(b).unwrap();
            format!("{}:{}", e["chain"].as_str().unwrap(), e["seq"])
        })
        .collect()
}

fn wait_for(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    check()
}

#[test]
fn every_event_lands_in_the_stream_exactly_once_after_retries() {
    let mut suffix = [0u8; 6];
    getrandom::fill(&mut suffix).unwrap();
    let suffix = hex::encode(suffix);
    let stream = format!("TASKGATE_TEST_{suffix}");
    let mut gw = TestGateway::start_with(&format!(
        r#"
[[sinks]]
name = "stream"
kind = "nats"
url = "{SERVER}"
subject = "taskgate.test.{suffix}"
stream = "{stream}"
"#
    ));
    for _ in 0..5 {
        gw.request("read", "5m");
    }
    let expected = store_ids(&gw);
    assert!(
        wait_for(Duration::from_secs(15), || stream_ids(&stream).len()
            >= expected.len()),
        "{} of {}",
        stream_ids(&stream).len(),
        expected.len()
    );
    // The gateway loses its cursor and publishes everything again.
    gw.stop();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!(
            "{}{suffix}",
            gw.store_path().with_extension("sinks.db").display()
        ));
    }
    gw.restart();
    gw.request("read", "5m");
    let expected = store_ids(&gw);
    assert!(wait_for(Duration::from_secs(15), || {
        let (_, sinks) = gw.http().get(&gw.tokens.auditor, "/v1/sinks");
        sinks[0]["lag"] == 0 && sinks[0]["delivered"].as_u64() >= Some(expected.len() as u64)
    }));
    let ids = stream_ids(&stream);
    delete_stream(&stream);
    assert_eq!(ids, expected, "each event once, in order");
}
