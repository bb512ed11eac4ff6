//! A catalog of bad wire input (invariant 6): each case closes only the
//! connection it came on, with a clear error, nothing of it reaches the
//! database, and the gateway goes on serving a healthy session.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::TestGateway;
use common::cluster::TestCluster;
use common::raw::{RawPg, frontend, tags};

/// Everything the gateway sends until it closes the connection.
fn until_closed(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// A raw message: type byte, length, body.
fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn healthy(gw: &TestGateway, task: &str, token: &str) {
    let mut pg = RawPg::connect(gw.postgres, task, token, "shop");
    pg.send(&frontend::query("SELECT 1"));
    assert_eq!(tags(&pg.until_ready(1)), "TDCZ");
}

#[test]
fn each_bad_input_closes_only_its_connection() {
    let cluster = TestCluster::start();
    let gw = TestGateway::start_full(
        "startup_timeout = \"1s\"\nmax_message_bytes = 65536",
        &cluster.gateway_config(),
    );
    let (task, token) = gw.active_task("shop", "read", "10m");

    // A startup packet declaring 2 GiB: refused at once, nothing buffered.
    let mut raw = TcpStream::connect(gw.postgres).unwrap();
    raw.write_all(&i32::MAX.to_be_bytes()).unwrap();
    let text = until_closed(&mut raw);
    assert!(text.contains("08P01"), "{text}");
    healthy(&gw, &task, &token);

    // A startup that never finishes: closed after startup_timeout.
    let mut raw = TcpStream::connect(gw.postgres).unwrap();
    raw.write_all(&100i32.to_be_bytes()).unwrap();
    let started = Instant::now();
    let text = until_closed(&mut raw);
    assert!(text.contains("startup did not finish in time"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    healthy(&gw, &task, &token);

    // After login: an unknown message type, a message declaring 1 GiB, a
    // query that is not UTF-8. Each ends its own session with 08P01.
    for (what, bytes) in [
        ("unknown type", message(b'z', b"whatever")),
        ("huge length", {
            let mut m = vec![b'Q'];
            m.extend_from_slice(&(1i32 << 30).to_be_bytes());
            m.extend_from_slice(b"SELECT ");
            m
        }),
        (
            "invalid UTF-8",
            message(b'Q', b"SELECT 'caf\xe9 not_utf8_marker'\0"),
        ),
    ] {
        let mut pg = RawPg::connect(gw.postgres, &task, &token, "shop");
        pg.send(&bytes);
        let answers = pg.until_ready_or_closed();
        let fatal = answers.iter().find(|a| a.tag == 'E');
        assert_eq!(
            fatal.and_then(|a| a.sqlstate.as_deref()),
            Some("08P01"),
            "{what}: {answers:?}"
        );
        healthy(&gw, &task, &token);
    }
    assert!(
        !cluster.log().contains("not_utf8_marker"),
        "invalid text reached the database"
    );

    // Terminate in the middle of an extended query: the session ends
    // cleanly and what ran is recorded with an outcome.
    let mut pg = RawPg::connect(gw.postgres, &task, &token, "shop");
    let mut batch = frontend::parse("", "SELECT 42 AS mid_batch_marker", &[]);
    batch.extend(frontend::bind("", "", &[]));
    batch.extend(frontend::execute("", 0));
    batch.extend(message(b'X', b""));
    pg.send(&batch);
    let _ = pg.until_ready_or_closed();
    let started = gw.events_of("command.started");
    let mid = started
        .iter()
        .find(|e| e["payload"]["sql"] == "SELECT 42 AS mid_batch_marker")
        .expect("the executed statement was not recorded");
    // Its own session is closed as the client left, and recorded so.
    assert!(gw.eventually(Duration::from_secs(5), || {
        gw.events_of("session.closed").iter().any(|e| {
            e["session"] == mid["session"] && e["payload"]["reason"] == "client disconnected"
        })
    }));
    healthy(&gw, &task, &token);
    assert_eq!(gw.http().get_anonymous("/healthz").0, 200);
}
