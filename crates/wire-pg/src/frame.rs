//! Cutting a byte stream into messages: type byte, then a big-endian i32
//! length that counts itself but not the type byte.
//!
//! Every message type has a named size cap, checked from the header alone
//! so a forged length never makes the gateway buffer more than the cap.

use bytes::{Bytes, BytesMut};

/// Bytes of the header: type byte and length.
pub const HEADER_BYTES: usize = 5;
/// Messages with no body (Sync, Flush, Terminate, CopyDone, ...).
const EMPTY_BODY_BYTES: usize = 4;
/// Messages that carry only names: Execute, Close, Describe.
pub const MAX_NAME_MESSAGE_BYTES: usize = 64 * 1024;
/// Password, SASLInitialResponse and SASLResponse.
pub const MAX_AUTH_MESSAGE_BYTES: usize = 16 * 1024;
/// CopyFail carries an error message.
pub const MAX_COPY_FAIL_BYTES: usize = 64 * 1024;
/// PostgreSQL's own limit on any message from the server.
pub const MAX_BACKEND_MESSAGE_BYTES: usize = 1024 * 1024 * 1024;
/// Most bytes reserved ahead for a message not yet received in full.
pub const MAX_PREALLOC_BYTES: usize = 64 * 1024;
/// Default cap for messages carrying SQL, parameters or COPY data.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Which side sent the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client to server.
    Frontend,
    /// Server to client.
    Backend,
}

/// Limits set by configuration.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest Query, Parse, Bind, FunctionCall or CopyData, in bytes.
    pub max_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

/// One whole message: `raw` holds its original bytes, header included, so
/// it can be forwarded exactly as it arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub tag: u8,
    pub raw: Bytes,
}

impl Frame {
    pub fn body(&self) -> &[u8] {
        &self.raw[HEADER_BYTES..]
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("unknown message type {}", describe_tag(*.0))]
    UnknownType(u8),
    #[error("message type {} declares length {len}, less than its header", describe_tag(*tag))]
    TooShort { tag: u8, len: i64 },
    #[error("message type {} of {len} bytes is over the {max}-byte limit", describe_tag(*tag))]
    TooLong { tag: u8, len: usize, max: usize },
}

/// Why a message's fields could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message ends early")]
    Truncated,
    #[error("string is not NUL-terminated")]
    Unterminated,
    #[error("text is not valid UTF-8")]
    NotUtf8,
    #[error("invalid length {0}")]
    BadLength(i32),
    #[error("{0} unexpected bytes at the end of the message")]
    TrailingBytes(usize),
    #[error("invalid value: {0}")]
    Invalid(&'static str),
}

fn describe_tag(tag: u8) -> String {
    if tag.is_ascii_graphic() {
        format!("'{}'", tag as char)
    } else {
        format!("0x{tag:02x}")
    }
}

/// The largest message of this type this side may send, or `None` for a
/// type it never sends.
pub fn max_bytes(direction: Direction, tag: u8, limits: &Limits) -> Option<usize> {
    let body = match direction {
        Direction::Frontend => match tag {
            b'Q' | b'P' | b'B' | b'F' | b'd' => limits.max_message_bytes,
            b'E' | b'C' | b'D' => MAX_NAME_MESSAGE_BYTES,
            b'S' | b'H' | b'X' | b'c' => EMPTY_BODY_BYTES,
            b'f' => MAX_COPY_FAIL_BYTES,
            b'p' => MAX_AUTH_MESSAGE_BYTES,
            _ => return None,
        },
        Direction::Backend => match tag {
            b'R' | b'S' | b'K' | b'Z' | b'C' | b'E' | b'N' | b'A' | b'T' | b'D' | b'I' | b'1'
            | b'2' | b'3' | b'n' | b's' | b't' | b'G' | b'H' | b'W' | b'd' | b'c' | b'V' | b'v' => {
                MAX_BACKEND_MESSAGE_BYTES
            }
            _ => return None,
        },
    };
    Some(body)
}

/// Takes the next whole message off the front of `buf`, or returns `None`
/// when more bytes are needed. The header is checked before the body is
/// waited for, so an oversized message fails at once.
pub fn decode(
    buf: &mut BytesMut,
    direction: Direction,
    limits: &Limits,
) -> Result<Option<Frame>, FrameError> {
    if buf.len() < HEADER_BYTES {
        return Ok(None);
    }
    let tag = buf[0];
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    let max = max_bytes(direction, tag, limits).ok_or(FrameError::UnknownType(tag))?;
    if len < 4 {
        return Err(FrameError::TooShort {
            tag,
            len: i64::from(len),
        });
    }
    let len = len as usize;
    if len > max {
        return Err(FrameError::TooLong { tag, len, max });
    }
    let total = len + 1;
    if buf.len() < total {
        // Grow towards the declared size a chunk at a time: a header alone
        // must not make the gateway allocate the whole cap.
        buf.reserve((total - buf.len()).min(MAX_PREALLOC_BYTES));
        return Ok(None);
    }
    let raw = buf.split_to(total).freeze();
    Ok(Some(Frame { tag, raw }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn frames_come_out_whole_and_unchanged() {
        let mut wire = msg(b'Q', b"select 1\0");
        wire.extend(msg(b'S', b""));
        let mut buf = BytesMut::from(&wire[..3]);
        let limits = Limits::default();
        assert_eq!(decode(&mut buf, Direction::Frontend, &limits), Ok(None));
        buf.extend_from_slice(&wire[3..]);
        let q = decode(&mut buf, Direction::Frontend, &limits)
            .unwrap()
            .unwrap();
        assert_eq!(q.tag, b'Q');
        assert_eq!(q.body(), b"select 1\0");
        let s = decode(&mut buf, Direction::Frontend, &limits)
            .unwrap()
            .unwrap();
        assert_eq!(s.raw.as_ref(), msg(b'S', b"").as_slice());
        assert!(buf.is_empty());
    }

    #[test]
    fn bad_headers_are_refused_before_the_body_arrives() {
        let limits = Limits {
            max_message_bytes: 100,
        };
        let cases: Vec<(Vec<u8>, FrameError)> = vec![
            (vec![b'!', 0, 0, 0, 4], FrameError::UnknownType(b'!')),
            (
                vec![b'Q', 0, 0, 0, 3],
                FrameError::TooShort { tag: b'Q', len: 3 },
            ),
            (
                vec![b'Q', 0xff, 0xff, 0xff, 0xff],
                FrameError::TooShort { tag: b'Q', len: -1 },
            ),
            (
                vec![b'Q', 0, 0, 1, 0],
                FrameError::TooLong {
                    tag: b'Q',
                    len: 256,
                    max: 100,
                },
            ),
            (
                vec![b'S', 0, 0, 0, 5],
                FrameError::TooLong {
                    tag: b'S',
                    len: 5,
                    max: 4,
                },
            ),
        ];
        for (bytes, want) in cases {
            let mut buf = BytesMut::from(&bytes[..]);
            assert_eq!(
                decode(&mut buf, Direction::Frontend, &limits),
                Err(want.clone()),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn a_header_alone_reserves_little() {
        // Declares a 64 MiB Query, within the limit, and sends nothing more.
        let mut buf = BytesMut::from(&[b'Q', 0x04, 0x00, 0x00, 0x00][..]);
        let limits = Limits {
            max_message_bytes: 1 << 27,
        };
        assert_eq!(decode(&mut buf, Direction::Frontend, &limits), Ok(None));
        assert!(
            buf.capacity() <= MAX_PREALLOC_BYTES + 5,
            "{}",
            buf.capacity()
        );
    }

    #[test]
    fn backend_types_differ_from_frontend_types() {
        let mut buf = BytesMut::from(&msg(b'Z', b"I")[..]);
        assert_eq!(
            decode(&mut buf.clone(), Direction::Frontend, &Limits::default()),
            Err(FrameError::UnknownType(b'Z'))
        );
        let z = decode(&mut buf, Direction::Backend, &Limits::default())
            .unwrap()
            .unwrap();
        assert_eq!(z.body(), b"I");
    }
}
