//! The first message of a connection, which has no type byte: SSLRequest,
//! GSSENCRequest, CancelRequest or StartupMessage.

use bytes::{Buf, BytesMut};

use crate::frame::DecodeError;
use crate::read::Reader;

/// PostgreSQL's own cap on a startup packet.
pub const MAX_STARTUP_BYTES: usize = 10_000;
/// Most key/value pairs accepted in a startup packet.
pub const MAX_STARTUP_PARAMS: usize = 64;
pub const SSL_REQUEST_CODE: u32 = 80_877_103;
pub const GSSENC_REQUEST_CODE: u32 = 80_877_104;
pub const CANCEL_REQUEST_CODE: u32 = 80_877_102;
/// Protocol 3.0; 3.2 (PostgreSQL 18) is answered as 3.0 by servers that
/// do not know it, and so by us.
pub const PROTOCOL_3_0: u32 = 196_608;
const PROTOCOL_MAJOR_3: u32 = 3;
/// Cancel keys are 4 bytes up to protocol 3.1 and at most 256 from 3.2.
const MAX_CANCEL_KEY_BYTES: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Startup {
    SslRequest,
    GssEncRequest,
    Cancel {
        process_id: u32,
        secret_key: Vec<u8>,
    },
    Startup {
        /// Major in the high 16 bits, minor in the low.
        protocol: u32,
        params: Vec<(String, String)>,
    },
}

impl Startup {
    /// A setting's value, its name compared as PostgreSQL compares
    /// setting names (without regard to ASCII case): `Client_Encoding` is
    /// `client_encoding`. `user`, `database`, `options` and `replication`
    /// are exact: use [`Startup::param`].
    pub fn setting(&self, name: &str) -> Option<&str> {
        match self {
            Startup::Startup { params, .. } => params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }

    /// A startup parameter's value, such as `user` or `database`.
    pub fn param(&self, name: &str) -> Option<&str> {
        match self {
            Startup::Startup { params, .. } => params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StartupError {
    #[error("startup packet length {0} is invalid (must be 8 to {MAX_STARTUP_BYTES} bytes)")]
    BadLength(i64),
    #[error("unsupported frontend protocol {}.{}: this gateway speaks 3.x", .0 >> 16, .0 & 0xffff)]
    UnsupportedProtocol(u32),
    #[error("malformed startup packet: {0}")]
    Malformed(#[from] DecodeError),
    #[error("startup packet has more than {MAX_STARTUP_PARAMS} parameters")]
    TooManyParams,
}

/// Takes the startup packet off `buf`, or `None` if more bytes are needed.
pub fn decode(buf: &mut BytesMut) -> Result<Option<Startup>, StartupError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if !(8..=MAX_STARTUP_BYTES as i32).contains(&len) {
        return Err(StartupError::BadLength(i64::from(len)));
    }
    let len = len as usize;
    if buf.len() < len {
        return Ok(None);
    }
    let packet = buf.split_to(len);
    let mut r = Reader::new(&packet[4..]);
    let code = r.u32()?;
    let message = match code {
        SSL_REQUEST_CODE => {
            r.finish()?;
            Startup::SslRequest
        }
        GSSENC_REQUEST_CODE => {
            r.finish()?;
            Startup::GssEncRequest
        }
        CANCEL_REQUEST_CODE => {
            let process_id = r.u32()?;
            let secret_key = r.rest().to_vec();
            if secret_key.len() < 4 || secret_key.len() > MAX_CANCEL_KEY_BYTES {
                return Err(DecodeError::Invalid("cancel key length").into());
            }
            Startup::Cancel {
                process_id,
                secret_key,
            }
        }
        protocol if protocol >> 16 == PROTOCOL_MAJOR_3 => {
            let mut params = Vec::new();
            loop {
                let key = r.cstr()?;
                if key.is_empty() {
                    break;
                }
                let value = r.cstr()?;
                if params.len() == MAX_STARTUP_PARAMS {
                    return Err(StartupError::TooManyParams);
                }
                params.push((key.to_owned(), value.to_owned()));
            }
            r.finish()?;
            Startup::Startup { protocol, params }
        }
        other => return Err(StartupError::UnsupportedProtocol(other)),
    };
    debug_assert!(packet.remaining() == len);
    Ok(Some(message))
}

/// Encodes a StartupMessage (protocol 3.0) with these parameters.
pub fn encode(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = PROTOCOL_3_0.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(code: u32, rest: &[u8]) -> BytesMut {
        let mut v = ((rest.len() + 8) as i32).to_be_bytes().to_vec();
        v.extend_from_slice(&code.to_be_bytes());
        v.extend_from_slice(rest);
        BytesMut::from(&v[..])
    }

    #[test]
    fn decodes_each_kind() {
        assert_eq!(
            decode(&mut packet(SSL_REQUEST_CODE, b"")),
            Ok(Some(Startup::SslRequest))
        );
        assert_eq!(
            decode(&mut packet(GSSENC_REQUEST_CODE, b"")),
            Ok(Some(Startup::GssEncRequest))
        );
        assert_eq!(
            decode(&mut packet(CANCEL_REQUEST_CODE, &[0, 0, 0, 7, 1, 2, 3, 4])),
            Ok(Some(Startup::Cancel {
                process_id: 7,
                secret_key: vec![1, 2, 3, 4]
            }))
        );
        let mut buf = BytesMut::from(&encode(&[("user", "tsk_1"), ("database", "db")])[..]);
        let s = decode(&mut buf).unwrap().unwrap();
        assert_eq!(s.param("user"), Some("tsk_1"));
        assert_eq!(s.param("database"), Some("db"));
        assert!(buf.is_empty());
    }

    #[test]
    fn refuses_bad_packets() {
        let mut huge = BytesMut::from(&[0u8, 1, 0, 0][..]);
        assert_eq!(decode(&mut huge), Err(StartupError::BadLength(65536)));
        let mut tiny = BytesMut::from(&[0u8, 0, 0, 4][..]);
        assert_eq!(decode(&mut tiny), Err(StartupError::BadLength(4)));
        assert_eq!(
            decode(&mut packet(2 << 16, b"\0")),
            Err(StartupError::UnsupportedProtocol(2 << 16))
        );
        assert!(matches!(
            decode(&mut packet(PROTOCOL_3_0, b"user\0x")),
            Err(StartupError::Malformed(_))
        ));
        assert!(matches!(
            decode(&mut packet(PROTOCOL_3_0, b"user\0\xff\0\0")),
            Err(StartupError::Malformed(DecodeError::NotUtf8))
        ));
        assert!(matches!(
            decode(&mut packet(SSL_REQUEST_CODE, b"x")),
            Err(StartupError::Malformed(DecodeError::TrailingBytes(1)))
        ));
    }

    #[test]
    fn waits_for_the_whole_packet() {
        let full = encode(&[("user", "u")]);
        let mut buf = BytesMut::from(&full[..full.len() - 1]);
        assert_eq!(decode(&mut buf), Ok(None));
    }
}
