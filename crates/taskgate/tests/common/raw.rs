//! A bare PostgreSQL protocol client for tests that need exact message
//! sequences no driver sends (pipelined batches, reused names, raw bytes).
//! Logs in with SCRAM-SHA-256 by postgres-protocol's client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use taskgate_wire_pg::backend::{self, Authentication, BackendMessage};
use taskgate_wire_pg::encode::frontend as enc;
use taskgate_wire_pg::frame::{self, Direction, Limits};

#[allow(unused_imports)]
pub use taskgate_wire_pg::encode::frontend;

/// One statement in the extended protocol, unnamed: Parse, Bind, Execute,
/// Sync.
pub fn extended(sql: &str) -> Vec<u8> {
    [
        frontend::parse("", sql, &[]),
        frontend::bind("", "", &[]),
        frontend::execute("", 0),
        frontend::sync(),
    ]
    .concat()
}

pub struct RawPg {
    stream: TcpStream,
    buf: BytesMut,
    /// The process id of the session's BackendKeyData.
    pub pid: u32,
}

/// One server message: its type and, for errors, the SQLSTATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub tag: char,
    pub sqlstate: Option<String>,
    pub text: String,
    pub hint: Option<String>,
}

impl RawPg {
    pub fn connect(addr: SocketAddr, user: &str, password: &str, db: &str) -> RawPg {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut pg = RawPg {
            stream,
            buf: BytesMut::new(),
            pid: 0,
        };
        pg.send(&taskgate_wire_pg::startup::encode(&[
            ("user", user),
            ("database", db),
        ]));
        let mut scram = None;
        loop {
            let (tag, body) = pg.next_raw();
            if tag == b'K' {
                pg.pid = u32::from_be_bytes(body[..4].try_into().unwrap());
            }
            let frame = frame_of(tag, &body);
            match backend::decode(&frame).unwrap() {
                BackendMessage::Authentication(Authentication::Sasl { .. }) => {
                    let client =
                        ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
                    pg.send(&enc::sasl_initial_response(
                        "SCRAM-SHA-256",
                        client.message(),
                    ));
                    scram = Some(client);
                }
                BackendMessage::Authentication(Authentication::SaslContinue(data)) => {
                    let client = scram.as_mut().unwrap();
                    client.update(data).unwrap();
                    let message = client.message().to_vec();
                    pg.send(&enc::sasl_response(&message));
                }
                BackendMessage::Authentication(Authentication::SaslFinal(data)) => {
                    scram.take().unwrap().finish(data).unwrap();
                }
                BackendMessage::ErrorResponse(f) => {
                    panic!("login refused: {} {}", f.code, f.message)
                }
                BackendMessage::ReadyForQuery(_) => return pg,
                _ => {}
            }
        }
    }

    /// One read, retried when a signal interrupts it (EINTR is not the
    /// gateway's answer).
    fn read_some(&mut self, chunk: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.stream.read(chunk) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    fn next_raw(&mut self) -> (u8, Vec<u8>) {
        loop {
            if let Some(f) =
                frame::decode(&mut self.buf, Direction::Backend, &Limits::default()).unwrap()
            {
                return (f.tag, f.body().to_vec());
            }
            let mut chunk = [0u8; 8192];
            let n = self.read_some(&mut chunk).unwrap();
            assert!(n > 0, "the gateway closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads answers until a ReadyForQuery or until the gateway closes the
    /// connection (after a FATAL, say).
    pub fn until_ready_or_closed(&mut self) -> Vec<Answer> {
        let mut answers = Vec::new();
        loop {
            let mut chunk = [0u8; 8192];
            while let Some(f) =
                frame::decode(&mut self.buf, Direction::Backend, &Limits::default()).unwrap()
            {
                answers.push(answer_of(&f));
                if f.tag == b'Z' {
                    return answers;
                }
            }
            match self.read_some(&mut chunk) {
                Ok(0) | Err(_) => return answers,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads answers until an ErrorResponse (included).
    pub fn until_error(&mut self) -> Vec<Answer> {
        let mut answers = Vec::new();
        loop {
            let (tag, body) = self.next_raw();
            answers.push(answer_of(&frame_of(tag, &body)));
            if tag == b'E' {
                return answers;
            }
        }
    }

    /// Reads answers until the `n`th ReadyForQuery (included).
    pub fn until_ready(&mut self, n: usize) -> Vec<Answer> {
        let mut answers = Vec::new();
        let mut ready = 0;
        while ready < n {
            let (tag, body) = self.next_raw();
            if tag == b'Z' {
                ready += 1;
            }
            answers.push(answer_of(&frame_of(tag, &body)));
        }
        answers
    }
}

/// A server message as the tests look at it: errors and notices with their
/// SQLSTATE, command tags, and ReadyForQuery's transaction status as text.
fn answer_of(f: &frame::Frame) -> Answer {
    let (sqlstate, text, hint) = match backend::decode(f).unwrap() {
        BackendMessage::ErrorResponse(e) | BackendMessage::NoticeResponse(e) => (
            Some(e.code.to_owned()),
            e.message.to_owned(),
            e.hint.map(str::to_owned),
        ),
        BackendMessage::CommandComplete(t) => (None, t.to_owned(), None),
        BackendMessage::ReadyForQuery(status) => (None, (status as char).to_string(), None),
        BackendMessage::ParameterStatus { name, value } => (None, format!("{name}={value}"), None),
        // The sender's process id and the channel.
        BackendMessage::NotificationResponse => {
            let body = f.body();
            let pid = u32::from_be_bytes(body[..4].try_into().unwrap());
            let channel = body[4..].split(|b| *b == 0).next().unwrap();
            (
                None,
                format!("{pid} {}", String::from_utf8_lossy(channel)),
                None,
            )
        }
        // A row's first column, as text.
        BackendMessage::DataRow => (None, first_column(f.body()), None),
        _ => (None, String::new(), None),
    };
    Answer {
        tag: f.tag as char,
        sqlstate,
        text,
        hint,
    }
}

fn first_column(body: &[u8]) -> String {
    let Some(len) = body.get(2..6) else {
        return String::new();
    };
    let len = i32::from_be_bytes(len.try_into().unwrap());
    match usize::try_from(len) {
        Ok(len) => String::from_utf8_lossy(body.get(6..6 + len).unwrap_or_default()).into_owned(),
        Err(_) => String::new(),
    }
}

fn frame_of(tag: u8, body: &[u8]) -> frame::Frame {
    let mut bytes = vec![tag];
    bytes.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    bytes.extend_from_slice(body);
    let mut buf = BytesMut::from(&bytes[..]);
    frame::decode(&mut buf, Direction::Backend, &Limits::default())
        .unwrap()
        .unwrap()
}

/// The tags of a list of answers, as a string: `"12CZ"`.
pub fn tags(answers: &[Answer]) -> String {
    answers.iter().map(|a| a.tag).collect()
}

/// How a wait for answers ended before it had them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The gateway closed the connection (after a FATAL, say).
    Closed,
    /// Nothing came for the read timeout: something waits for something
    /// that will not come.
    TimedOut,
}

impl RawPg {
    /// Reads answers until the `n`th ReadyForQuery, or says why it stopped
    /// before.
    pub fn answers(&mut self, n: usize) -> (Vec<Answer>, Option<Cut>) {
        let mut answers = Vec::new();
        let mut ready = 0;
        loop {
            while let Some(f) =
                frame::decode(&mut self.buf, Direction::Backend, &Limits::default()).unwrap()
            {
                answers.push(answer_of(&f));
                if f.tag == b'Z' {
                    ready += 1;
                    if ready == n {
                        return (answers, None);
                    }
                }
            }
            let mut chunk = [0u8; 8192];
            match self.read_some(&mut chunk) {
                Ok(0) => return (answers, Some(Cut::Closed)),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return (answers, Some(Cut::TimedOut));
                }
                Err(_) => return (answers, Some(Cut::Closed)),
            }
        }
    }

    /// Sends a message, ignoring a connection the gateway already closed.
    pub fn try_send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }
}
