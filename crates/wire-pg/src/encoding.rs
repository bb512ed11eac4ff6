//! Client encodings: which ones the gateway can read statements in, and how.
//!
//! PostgreSQL converts each message's text from `client_encoding` to the
//! database's encoding before its lexer sees it. In every encoding accepted
//! here a byte below 0x80 is always the ASCII character it names, and no
//! multibyte character holds one, so a statement splits into the same tokens
//! in the client's bytes as in the server's; the gateway reads the text
//! decoded to UTF-8. In SJIS, BIG5, GBK, UHC, GB18030 and JOHAB the second
//! byte of a character can be a quote or a backslash: such text splits one
//! way to a UTF-8 reader and another to the server, so they are refused.
//!
//! Decoding uses `encoding_rs` (the WHATWG tables). Where WHATWG gives an
//! ISO 8859 label to a Windows code page (ISO 8859-1 and 8859-9), the bytes
//! 0x80–0x9F are read as PostgreSQL reads them: C1 control characters.

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};
use encoding_rs::Encoding;

use crate::frame::{Direction, Frame, HEADER_BYTES};

/// An encoding the gateway reads statements in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientEncoding {
    /// PostgreSQL's name for it, as `ParameterStatus` reports it.
    pub name: &'static str,
    reading: Reading,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reading {
    Utf8,
    /// SQL_ASCII: no conversion, so the server reads the bytes as its own
    /// encoding (UTF-8, for the databases the gateway serves); invalid
    /// sequences are read as U+FFFD, which the server refuses anyway.
    Raw,
    Table(&'static Encoding),
    /// A Windows table whose 0x80–0x9F PostgreSQL reads as C1 controls.
    C1Controls(&'static Encoding),
}

/// Why an encoding cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodingRefused {
    #[error(
        "client_encoding {0} is not supported: in it a quote or backslash byte can be part of a multibyte character, so the gateway cannot split statements as the server does; use UTF8"
    )]
    AsciiUnsafe(String),
    #[error("client_encoding {0} is not supported by taskgate; use UTF8")]
    NoDecoder(String),
    #[error("client_encoding {0:?} is not an encoding PostgreSQL knows")]
    Unknown(String),
}

impl ClientEncoding {
    pub const UTF8: ClientEncoding = ClientEncoding {
        name: "UTF8",
        reading: Reading::Utf8,
    };

    /// The encoding PostgreSQL calls `name` (any of its spellings:
    /// `latin1`, `ISO-8859-1`, `WIN1252`, `windows-1252`, `unicode`...).
    pub fn named(name: &str) -> Result<ClientEncoding, EncodingRefused> {
        let cleaned: String = name
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect();
        let canonical = ALIASES
            .iter()
            .find(|(alias, _)| *alias == cleaned)
            .map(|(_, canonical)| *canonical)
            .or_else(|| {
                READABLE
                    .iter()
                    .map(|(n, _)| *n)
                    .chain(ASCII_UNSAFE.iter().copied())
                    .chain(NO_DECODER.iter().copied())
                    .find(|n| clean(n) == cleaned)
            })
            .ok_or_else(|| EncodingRefused::Unknown(name.to_owned()))?;
        if ASCII_UNSAFE.contains(&canonical) {
            return Err(EncodingRefused::AsciiUnsafe(canonical.to_owned()));
        }
        READABLE
            .iter()
            .find(|(n, _)| *n == canonical)
            .map(|(name, reading)| ClientEncoding {
                name,
                reading: *reading,
            })
            .ok_or_else(|| EncodingRefused::NoDecoder(canonical.to_owned()))
    }

    pub fn is_utf8(&self) -> bool {
        self.reading == Reading::Utf8
    }

    /// The text of `bytes` as the server reads it, in UTF-8. Borrowed when
    /// the bytes are ASCII (the same in every encoding here) or already
    /// UTF-8. Bytes the encoding has no character for become U+FFFD: the
    /// server refuses such text, and a replacement character is never a
    /// quote, a backslash or a separator.
    pub fn decode<'a>(&self, bytes: &'a [u8]) -> Cow<'a, str> {
        if bytes.is_ascii() {
            // ASCII is valid UTF-8.
            return String::from_utf8_lossy(bytes);
        }
        match self.reading {
            Reading::Utf8 | Reading::Raw => String::from_utf8_lossy(bytes),
            Reading::Table(table) => table.decode_without_bom_handling(bytes).0,
            Reading::C1Controls(table) => {
                // Single-byte: one character per byte.
                let decoded = table.decode_without_bom_handling(bytes).0;
                Cow::Owned(
                    bytes
                        .iter()
                        .zip(decoded.chars())
                        .map(|(&b, c)| {
                            if (0x80..=0x9f).contains(&b) {
                                char::from(b)
                            } else {
                                c
                            }
                        })
                        .collect(),
                )
            }
        }
    }

    /// `frame` with the text of its fields in UTF-8, for reading only (the
    /// gateway forwards the original bytes). Binary fields (parameter
    /// values, type oids, process ids) are kept as they are. Borrowed when
    /// there is nothing to convert.
    pub fn transcode<'f>(&self, frame: &'f Frame, direction: Direction) -> Cow<'f, Frame> {
        // The type first: most messages (rows above all) carry no text the
        // gateway reads, and are never scanned.
        let layout: &[Field] = match (direction, frame.tag) {
            (Direction::Frontend, b'Q' | b'f') | (Direction::Backend, b'C') => &[Field::Text],
            (Direction::Frontend, b'P' | b'B') => &[Field::Text, Field::Text, Field::Rest],
            (Direction::Frontend, b'E') => &[Field::Text, Field::Rest],
            (Direction::Frontend, b'C' | b'D') => &[Field::Byte, Field::Text],
            // Each field is a type byte and a string, then a zero byte.
            (Direction::Backend, b'E' | b'N') => &[Field::Fields],
            (Direction::Backend, b'S') => &[Field::Text, Field::Text],
            (Direction::Backend, b'A') => &[Field::Int4, Field::Text, Field::Text],
            _ => return Cow::Borrowed(frame),
        };
        let body = frame.body();
        if body.is_ascii() || (self.is_utf8() && std::str::from_utf8(body).is_ok()) {
            return Cow::Borrowed(frame);
        }
        let mut out = BytesMut::with_capacity(frame.raw.len() + body.len() / 2);
        out.put_u8(frame.tag);
        out.put_u32(0);
        let mut rest = body;
        for field in layout {
            match field {
                Field::Byte | Field::Int4 => {
                    let n = if *field == Field::Byte { 1 } else { 4 };
                    let (head, tail) = rest.split_at(n.min(rest.len()));
                    out.put_slice(head);
                    rest = tail;
                }
                Field::Text => {
                    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
                    out.put_slice(self.decode(&rest[..end]).as_bytes());
                    rest = &rest[end..];
                    if let Some((&nul, tail)) = rest.split_first() {
                        out.put_u8(nul);
                        rest = tail;
                    }
                }
                Field::Fields => {
                    // No NUL inside a character in these encodings, so the
                    // type bytes and terminators stay where they are.
                    out.put_slice(self.decode(rest).as_bytes());
                    rest = &[];
                }
                Field::Rest => {
                    out.put_slice(rest);
                    rest = &[];
                }
            }
        }
        out.put_slice(rest);
        let len = u32::try_from(out.len() - 1).unwrap_or(u32::MAX);
        out[1..HEADER_BYTES].copy_from_slice(&len.to_be_bytes());
        Cow::Owned(Frame {
            tag: frame.tag,
            raw: Bytes::from(out),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Byte,
    Int4,
    Text,
    Fields,
    Rest,
}

fn clean(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// PostgreSQL's names (`pg_enc2name_tbl`) of the encodings the gateway reads.
const READABLE: &[(&str, Reading)] = &[
    ("UTF8", Reading::Utf8),
    ("SQL_ASCII", Reading::Raw),
    ("EUC_JP", Reading::Table(encoding_rs::EUC_JP)),
    ("EUC_KR", Reading::Table(encoding_rs::EUC_KR)),
    // GB 2312 in EUC form is a part of GBK's two-byte range.
    ("EUC_CN", Reading::Table(encoding_rs::GBK)),
    ("LATIN1", Reading::C1Controls(encoding_rs::WINDOWS_1252)),
    ("LATIN2", Reading::Table(encoding_rs::ISO_8859_2)),
    ("LATIN3", Reading::Table(encoding_rs::ISO_8859_3)),
    ("LATIN4", Reading::Table(encoding_rs::ISO_8859_4)),
    ("LATIN5", Reading::C1Controls(encoding_rs::WINDOWS_1254)),
    ("LATIN6", Reading::Table(encoding_rs::ISO_8859_10)),
    ("LATIN7", Reading::Table(encoding_rs::ISO_8859_13)),
    ("LATIN8", Reading::Table(encoding_rs::ISO_8859_14)),
    ("LATIN9", Reading::Table(encoding_rs::ISO_8859_15)),
    ("LATIN10", Reading::Table(encoding_rs::ISO_8859_16)),
    ("ISO_8859_5", Reading::Table(encoding_rs::ISO_8859_5)),
    ("ISO_8859_6", Reading::Table(encoding_rs::ISO_8859_6)),
    ("ISO_8859_7", Reading::Table(encoding_rs::ISO_8859_7)),
    ("ISO_8859_8", Reading::Table(encoding_rs::ISO_8859_8)),
    ("WIN866", Reading::Table(encoding_rs::IBM866)),
    ("WIN874", Reading::Table(encoding_rs::WINDOWS_874)),
    ("WIN1250", Reading::Table(encoding_rs::WINDOWS_1250)),
    ("WIN1251", Reading::Table(encoding_rs::WINDOWS_1251)),
    ("WIN1252", Reading::Table(encoding_rs::WINDOWS_1252)),
    ("WIN1253", Reading::Table(encoding_rs::WINDOWS_1253)),
    ("WIN1254", Reading::Table(encoding_rs::WINDOWS_1254)),
    ("WIN1255", Reading::Table(encoding_rs::WINDOWS_1255)),
    ("WIN1256", Reading::Table(encoding_rs::WINDOWS_1256)),
    ("WIN1257", Reading::Table(encoding_rs::WINDOWS_1257)),
    ("WIN1258", Reading::Table(encoding_rs::WINDOWS_1258)),
    ("KOI8R", Reading::Table(encoding_rs::KOI8_R)),
    ("KOI8U", Reading::Table(encoding_rs::KOI8_U)),
];

/// Encodings whose multibyte characters can hold an ASCII byte.
const ASCII_UNSAFE: &[&str] = &[
    "SJIS",
    "SHIFT_JIS_2004",
    "BIG5",
    "GBK",
    "UHC",
    "GB18030",
    "JOHAB",
];

/// Safe to split, but with no decoder here to record their text with.
const NO_DECODER: &[&str] = &["EUC_TW", "EUC_JIS_2004", "MULE_INTERNAL"];

/// PostgreSQL's other spellings (`pg_encname_tbl`), cleaned as it cleans
/// them (letters and digits, lower case).
const ALIASES: &[(&str, &str)] = &[
    ("unicode", "UTF8"),
    ("abc", "WIN1258"),
    ("alt", "WIN866"),
    ("koi8", "KOI8R"),
    ("tcvn", "WIN1258"),
    ("tcvn5712", "WIN1258"),
    ("vscii", "WIN1258"),
    ("win", "WIN1251"),
    ("mskanji", "SJIS"),
    ("shiftjis", "SJIS"),
    ("win932", "SJIS"),
    ("windows932", "SJIS"),
    ("win936", "GBK"),
    ("windows936", "GBK"),
    ("win949", "UHC"),
    ("windows949", "UHC"),
    ("win950", "BIG5"),
    ("windows950", "BIG5"),
    ("iso88591", "LATIN1"),
    ("iso88592", "LATIN2"),
    ("iso88593", "LATIN3"),
    ("iso88594", "LATIN4"),
    ("iso88599", "LATIN5"),
    ("iso885910", "LATIN6"),
    ("iso885913", "LATIN7"),
    ("iso885914", "LATIN8"),
    ("iso885915", "LATIN9"),
    ("iso885916", "LATIN10"),
    ("windows866", "WIN866"),
    ("windows874", "WIN874"),
    ("windows1250", "WIN1250"),
    ("windows1251", "WIN1251"),
    ("windows1252", "WIN1252"),
    ("windows1253", "WIN1253"),
    ("windows1254", "WIN1254"),
    ("windows1255", "WIN1255"),
    ("windows1256", "WIN1256"),
    ("windows1257", "WIN1257"),
    ("windows1258", "WIN1258"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::{self, FrontendMessage};

    #[test]
    fn names_resolve_as_postgresql_spells_them() {
        assert_eq!(ClientEncoding::named("utf8").unwrap().name, "UTF8");
        assert_eq!(ClientEncoding::named("Unicode").unwrap().name, "UTF8");
        assert_eq!(ClientEncoding::named("ISO-8859-1").unwrap().name, "LATIN1");
        assert_eq!(ClientEncoding::named("latin9").unwrap().name, "LATIN9");
        assert_eq!(
            ClientEncoding::named("windows-1252").unwrap().name,
            "WIN1252"
        );
        assert_eq!(ClientEncoding::named("euc_jp").unwrap().name, "EUC_JP");
        assert_eq!(
            ClientEncoding::named("sql_ascii").unwrap().name,
            "SQL_ASCII"
        );
        for unsafe_one in [
            "SJIS",
            "Shift_JIS",
            "big5",
            "GBK",
            "uhc",
            "GB18030",
            "johab",
            "win932",
        ] {
            assert!(
                matches!(
                    ClientEncoding::named(unsafe_one),
                    Err(EncodingRefused::AsciiUnsafe(_))
                ),
                "{unsafe_one}"
            );
        }
        assert!(matches!(
            ClientEncoding::named("EUC_TW"),
            Err(EncodingRefused::NoDecoder(_))
        ));
        assert!(matches!(
            ClientEncoding::named("klingon"),
            Err(EncodingRefused::Unknown(_))
        ));
    }

    #[test]
    fn text_reads_as_the_server_reads_it() {
        let latin1 = ClientEncoding::named("LATIN1").unwrap();
        assert_eq!(latin1.decode(b"caf\xe9 \x80"), "café \u{80}");
        let win1252 = ClientEncoding::named("WIN1252").unwrap();
        assert_eq!(win1252.decode(b"\x80"), "€");
        let latin9 = ClientEncoding::named("LATIN9").unwrap();
        assert_eq!(latin9.decode(b"\xa4"), "€");
        let euc_jp = ClientEncoding::named("EUC_JP").unwrap();
        assert_eq!(euc_jp.decode(b"\xa4\xb5'"), "さ'");
        // A broken character never swallows the quote after it.
        assert_eq!(euc_jp.decode(b"\xa4'"), "\u{fffd}'");
        assert!(matches!(latin1.decode(b"SELECT 1"), Cow::Borrowed(_)));
    }

    #[test]
    fn only_text_fields_are_converted() {
        let latin1 = ClientEncoding::named("LATIN1").unwrap();
        let mut body = Vec::new();
        body.extend_from_slice(b"s\xe9\0SELECT 'caf\xe9'\0");
        body.extend_from_slice(&1u16.to_be_bytes());
        body.extend_from_slice(&0x8000_00e9u32.to_be_bytes());
        let mut framed = vec![b'P'];
        framed.extend_from_slice(&u32::try_from(body.len() + 4).unwrap().to_be_bytes());
        framed.extend_from_slice(&body);
        let frame = Frame {
            tag: b'P',
            raw: Bytes::from(framed),
        };
        let read = latin1.transcode(&frame, Direction::Frontend);
        match frontend::decode(&read).unwrap() {
            FrontendMessage::Parse {
                name,
                sql,
                param_types,
            } => {
                assert_eq!(name, "sé");
                assert_eq!(sql, "SELECT 'café'");
                assert_eq!(param_types, vec![0x8000_00e9]);
            }
            other => panic!("{other:?}"),
        }
    }
}
