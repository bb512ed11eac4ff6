//! Fields of the client messages policy and audit look at.

use crate::frame::{DecodeError, Frame};
use crate::read::Reader;

/// A decoded client message; slices borrow from the frame's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrontendMessage<'a> {
    Query(&'a str),
    Parse {
        name: &'a str,
        sql: &'a str,
        param_types: Vec<u32>,
    },
    Bind {
        portal: &'a str,
        statement: &'a str,
        /// Zero entries: all text; one: that format for all; else per parameter.
        param_formats: Vec<i16>,
        params: Vec<Option<&'a [u8]>>,
    },
    Execute {
        portal: &'a str,
        max_rows: i32,
    },
    Close {
        target: Target,
        name: &'a str,
    },
    Describe {
        target: Target,
        name: &'a str,
    },
    Sync,
    Flush,
    Terminate,
    CopyData(&'a [u8]),
    CopyDone,
    CopyFail(&'a str),
    FunctionCall {
        function_oid: u32,
        arg_formats: Vec<i16>,
        args: Vec<Option<&'a [u8]>>,
    },
    /// Password, SASLInitialResponse or SASLResponse: which one depends on
    /// the authentication step, so the body is left to the caller.
    Password(&'a [u8]),
}

/// What a Close or Describe names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Statement,
    Portal,
}

fn target(byte: u8) -> Result<Target, DecodeError> {
    match byte {
        b'S' => Ok(Target::Statement),
        b'P' => Ok(Target::Portal),
        _ => Err(DecodeError::Invalid(
            "Close/Describe target must be 'S' or 'P'",
        )),
    }
}

fn formats(r: &mut Reader<'_>) -> Result<Vec<i16>, DecodeError> {
    let n = r.count(2)?;
    (0..n).map(|_| r.i16()).collect()
}

fn values<'a>(r: &mut Reader<'a>) -> Result<Vec<Option<&'a [u8]>>, DecodeError> {
    let n = r.count(4)?;
    (0..n).map(|_| r.nullable()).collect()
}

/// Decodes a client frame (from [`crate::frame::decode`] with
/// `Direction::Frontend`). Every byte of the body must be accounted for.
pub fn decode(frame: &Frame) -> Result<FrontendMessage<'_>, DecodeError> {
    let mut r = Reader::new(frame.body());
    let message = match frame.tag {
        b'Q' => FrontendMessage::Query(r.cstr()?),
        b'P' => {
            let name = r.cstr()?;
            let sql = r.cstr()?;
            let n = r.count(4)?;
            let param_types = (0..n).map(|_| r.u32()).collect::<Result<_, _>>()?;
            FrontendMessage::Parse {
                name,
                sql,
                param_types,
            }
        }
        b'B' => {
            let portal = r.cstr()?;
            let statement = r.cstr()?;
            let param_formats = formats(&mut r)?;
            let params = values(&mut r)?;
            // Result-column formats: not needed, but must be well formed.
            formats(&mut r)?;
            FrontendMessage::Bind {
                portal,
                statement,
                param_formats,
                params,
            }
        }
        b'E' => FrontendMessage::Execute {
            portal: r.cstr()?,
            max_rows: r.i32()?,
        },
        b'C' => FrontendMessage::Close {
            target: target(r.u8()?)?,
            name: r.cstr()?,
        },
        b'D' => FrontendMessage::Describe {
            target: target(r.u8()?)?,
            name: r.cstr()?,
        },
        b'S' => FrontendMessage::Sync,
        b'H' => FrontendMessage::Flush,
        b'X' => FrontendMessage::Terminate,
        b'd' => FrontendMessage::CopyData(r.rest()),
        b'c' => FrontendMessage::CopyDone,
        b'f' => FrontendMessage::CopyFail(r.cstr()?),
        b'F' => {
            let function_oid = r.u32()?;
            let arg_formats = formats(&mut r)?;
            let args = values(&mut r)?;
            r.i16()?;
            FrontendMessage::FunctionCall {
                function_oid,
                arg_formats,
                args,
            }
        }
        b'p' => FrontendMessage::Password(r.rest()),
        _ => return Err(DecodeError::Invalid("not a client message type")),
    };
    r.finish()?;
    Ok(message)
}

/// The parameter format (0 text, 1 binary) of parameter `i`.
pub fn param_format(formats: &[i16], i: usize) -> i16 {
    match formats {
        [] => 0,
        [one] => *one,
        many => many.get(i).copied().unwrap_or(0),
    }
}

/// SASLInitialResponse: mechanism name and the client-first message.
pub fn sasl_initial_response(body: &[u8]) -> Result<(&str, &[u8]), DecodeError> {
    let mut r = Reader::new(body);
    let mechanism = r.cstr()?;
    let data = r.nullable()?.unwrap_or_default();
    r.finish()?;
    Ok((mechanism, data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::frontend as enc;
    use crate::frame::{self, Direction, Limits};
    use bytes::BytesMut;

    fn roundtrip(bytes: Vec<u8>) -> Frame {
        let mut buf = BytesMut::from(&bytes[..]);
        frame::decode(&mut buf, Direction::Frontend, &Limits::default())
            .unwrap()
            .unwrap()
    }

    #[test]
    fn decodes_the_extended_protocol() {
        let f = roundtrip(enc::parse("s1", "select $1", &[23]));
        assert_eq!(
            decode(&f),
            Ok(FrontendMessage::Parse {
                name: "s1",
                sql: "select $1",
                param_types: vec![23]
            })
        );
        let f = roundtrip(enc::bind("", "s1", &[Some(b"42"), None]));
        assert_eq!(
            decode(&f),
            Ok(FrontendMessage::Bind {
                portal: "",
                statement: "s1",
                param_formats: vec![],
                params: vec![Some(&b"42"[..]), None]
            })
        );
        let f = roundtrip(enc::execute("", 0));
        assert_eq!(
            decode(&f),
            Ok(FrontendMessage::Execute {
                portal: "",
                max_rows: 0
            })
        );
    }

    #[test]
    fn refuses_malformed_bodies() {
        // A Bind claiming 1000 parameters in a short body.
        let mut body = b"\0s\0".to_vec();
        body.extend_from_slice(&0i16.to_be_bytes());
        body.extend_from_slice(&1000i16.to_be_bytes());
        let f = roundtrip(crate::encode::message(b'B', &body));
        assert_eq!(decode(&f), Err(DecodeError::Truncated));
        // A Query with bytes after its terminator.
        let f = roundtrip(crate::encode::message(b'Q', b"select 1\0x"));
        assert_eq!(decode(&f), Err(DecodeError::TrailingBytes(1)));
        let f = roundtrip(crate::encode::message(b'Q', b"select 1"));
        assert_eq!(decode(&f), Err(DecodeError::Unterminated));
        let f = roundtrip(crate::encode::message(b'C', b"Xname\0"));
        assert!(matches!(decode(&f), Err(DecodeError::Invalid(_))));
        let mut negative = b"\0s\0".to_vec();
        negative.extend_from_slice(&0i16.to_be_bytes());
        negative.extend_from_slice(&1i16.to_be_bytes());
        negative.extend_from_slice(&(-5i32).to_be_bytes());
        negative.extend_from_slice(&0i16.to_be_bytes());
        let f = roundtrip(crate::encode::message(b'B', &negative));
        assert_eq!(decode(&f), Err(DecodeError::BadLength(-5)));
    }

    #[test]
    fn parameter_counts_are_unsigned_as_postgresql_reads_them() {
        // 40,000 NULL parameters: past i16::MAX, within PostgreSQL's 65,535.
        let n: u16 = 40_000;
        let mut body = b"\0s\0".to_vec();
        body.extend_from_slice(&0i16.to_be_bytes());
        body.extend_from_slice(&n.to_be_bytes());
        for _ in 0..n {
            body.extend_from_slice(&(-1i32).to_be_bytes());
        }
        body.extend_from_slice(&0i16.to_be_bytes());
        let f = roundtrip(crate::encode::message(b'B', &body));
        match decode(&f) {
            Ok(FrontendMessage::Bind { params, .. }) => assert_eq!(params.len(), 40_000),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parameter_formats_follow_the_protocol_rule() {
        assert_eq!(param_format(&[], 3), 0);
        assert_eq!(param_format(&[1], 3), 1);
        assert_eq!(param_format(&[0, 1], 1), 1);
    }
}
