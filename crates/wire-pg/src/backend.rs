//! Fields of the server messages the gateway looks at.

use crate::frame::{DecodeError, Frame};
use crate::read::Reader;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendMessage<'a> {
    Authentication(Authentication<'a>),
    ParameterStatus {
        name: &'a str,
        value: &'a str,
    },
    BackendKeyData {
        process_id: u32,
        secret_key: &'a [u8],
    },
    /// Transaction status: `I` idle, `T` in a block, `E` failed block.
    ReadyForQuery(u8),
    CommandComplete(&'a str),
    ErrorResponse(Fields<'a>),
    NoticeResponse(Fields<'a>),
    CopyInResponse,
    CopyOutResponse,
    CopyBothResponse,
    DataRow,
    EmptyQueryResponse,
    PortalSuspended,
    ParseComplete,
    BindComplete,
    CloseComplete,
    NoData,
    ParameterDescription,
    RowDescription,
    FunctionCallResponse,
    NotificationResponse,
    NegotiateProtocolVersion,
    CopyData,
    CopyDone,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authentication<'a> {
    Ok,
    CleartextPassword,
    Md5Password {
        salt: [u8; 4],
    },
    Sasl {
        mechanisms: Vec<&'a str>,
    },
    SaslContinue(&'a [u8]),
    SaslFinal(&'a [u8]),
    /// Kerberos, GSS, SSPI: not offered by the gateway's upstreams.
    Unsupported(u32),
}

/// The fields of an ErrorResponse or NoticeResponse.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields<'a> {
    pub severity: &'a str,
    pub code: &'a str,
    pub message: &'a str,
    pub hint: Option<&'a str>,
}

fn fields<'a>(r: &mut Reader<'a>) -> Result<Fields<'a>, DecodeError> {
    let mut out = Fields::default();
    loop {
        let kind = r.u8()?;
        if kind == 0 {
            return Ok(out);
        }
        let value = r.cstr()?;
        match kind {
            b'V' => out.severity = value,
            b'S' if out.severity.is_empty() => out.severity = value,
            b'C' => out.code = value,
            b'M' => out.message = value,
            b'H' => out.hint = Some(value),
            _ => {}
        }
    }
}

/// Decodes a server frame. Row data is not decoded: only counted.
pub fn decode(frame: &Frame) -> Result<BackendMessage<'_>, DecodeError> {
    let mut r = Reader::new(frame.body());
    let message = match frame.tag {
        b'R' => BackendMessage::Authentication(match r.u32()? {
            0 => Authentication::Ok,
            3 => Authentication::CleartextPassword,
            5 => {
                let s = r.bytes(4)?;
                Authentication::Md5Password {
                    salt: [s[0], s[1], s[2], s[3]],
                }
            }
            10 => {
                let mut mechanisms = Vec::new();
                loop {
                    let m = r.cstr()?;
                    if m.is_empty() {
                        break;
                    }
                    mechanisms.push(m);
                }
                Authentication::Sasl { mechanisms }
            }
            11 => Authentication::SaslContinue(r.rest()),
            12 => Authentication::SaslFinal(r.rest()),
            other => {
                r.rest();
                Authentication::Unsupported(other)
            }
        }),
        b'S' => BackendMessage::ParameterStatus {
            name: r.cstr()?,
            value: r.cstr()?,
        },
        b'K' => BackendMessage::BackendKeyData {
            process_id: r.u32()?,
            secret_key: r.rest(),
        },
        b'Z' => BackendMessage::ReadyForQuery(r.u8()?),
        b'C' => BackendMessage::CommandComplete(r.cstr()?),
        b'E' => BackendMessage::ErrorResponse(fields(&mut r)?),
        b'N' => BackendMessage::NoticeResponse(fields(&mut r)?),
        other => {
            // Bodies the gateway passes through without reading.
            r.rest();
            match other {
                b'G' => BackendMessage::CopyInResponse,
                b'H' => BackendMessage::CopyOutResponse,
                b'W' => BackendMessage::CopyBothResponse,
                b'D' => BackendMessage::DataRow,
                b'I' => BackendMessage::EmptyQueryResponse,
                b's' => BackendMessage::PortalSuspended,
                b'1' => BackendMessage::ParseComplete,
                b'2' => BackendMessage::BindComplete,
                b'3' => BackendMessage::CloseComplete,
                b'n' => BackendMessage::NoData,
                b't' => BackendMessage::ParameterDescription,
                b'T' => BackendMessage::RowDescription,
                b'V' => BackendMessage::FunctionCallResponse,
                b'A' => BackendMessage::NotificationResponse,
                b'v' => BackendMessage::NegotiateProtocolVersion,
                b'd' => BackendMessage::CopyData,
                b'c' => BackendMessage::CopyDone,
                _ => return Err(DecodeError::Invalid("not a server message type")),
            }
        }
    };
    r.finish()?;
    Ok(message)
}

/// The row count at the end of a command tag (`INSERT 0 5`, `SELECT 3`,
/// `COPY 10`), if the tag carries one.
pub fn tag_rows(tag: &str) -> Option<u64> {
    let (command, last) = tag.rsplit_once(' ')?;
    if command.is_empty() {
        return None;
    }
    last.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::backend as enc;
    use crate::frame::{self, Direction, Limits};
    use bytes::BytesMut;

    fn frame_of(bytes: &[u8]) -> Frame {
        let mut buf = BytesMut::from(bytes);
        frame::decode(&mut buf, Direction::Backend, &Limits::default())
            .unwrap()
            .unwrap()
    }

    #[test]
    fn decodes_what_the_gateway_encodes() {
        let f = frame_of(&enc::error("FATAL", "57P01", "task window ended", None));
        let BackendMessage::ErrorResponse(fields) = decode(&f).unwrap() else {
            panic!("not an error");
        };
        assert_eq!(
            (fields.severity, fields.code, fields.message),
            ("FATAL", "57P01", "task window ended")
        );
        let f = frame_of(&enc::ready_for_query(b'T'));
        assert_eq!(decode(&f), Ok(BackendMessage::ReadyForQuery(b'T')));
        let f = frame_of(&enc::backend_key_data(9, &[1, 2, 3, 4]));
        assert_eq!(
            decode(&f),
            Ok(BackendMessage::BackendKeyData {
                process_id: 9,
                secret_key: &[1, 2, 3, 4]
            })
        );
    }

    #[test]
    fn reads_rows_from_command_tags() {
        assert_eq!(tag_rows("INSERT 0 5"), Some(5));
        assert_eq!(tag_rows("SELECT 3"), Some(3));
        assert_eq!(tag_rows("COPY 10"), Some(10));
        assert_eq!(tag_rows("CREATE TABLE"), None);
        assert_eq!(tag_rows("BEGIN"), None);
        assert_eq!(tag_rows(" 4"), None);
    }
}
