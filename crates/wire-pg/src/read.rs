//! A cursor over a message body that refuses to read past its end.

use crate::frame::DecodeError;

pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(body: &'a [u8]) -> Self {
        Self { rest: body }
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.bytes(1)?[0])
    }

    pub(crate) fn i16(&mut self) -> Result<i16, DecodeError> {
        let b = self.bytes(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn i32(&mut self) -> Result<i32, DecodeError> {
        let b = self.bytes(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    /// A NUL-terminated UTF-8 string.
    pub(crate) fn cstr(&mut self) -> Result<&'a str, DecodeError> {
        let end = self
            .rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(DecodeError::Unterminated)?;
        let text = std::str::from_utf8(&self.rest[..end]).map_err(|_| DecodeError::NotUtf8)?;
        self.rest = &self.rest[end + 1..];
        Ok(text)
    }

    /// A length-prefixed value; length -1 is SQL NULL.
    pub(crate) fn nullable(&mut self) -> Result<Option<&'a [u8]>, DecodeError> {
        let len = self.i32()?;
        match len {
            -1 => Ok(None),
            n if n < 0 => Err(DecodeError::BadLength(n)),
            n => self.bytes(n as usize).map(Some),
        }
    }

    /// A count followed by that many items; the count is checked against
    /// the bytes left so a forged count cannot make us allocate much.
    pub(crate) fn count(&mut self, min_item_bytes: usize) -> Result<usize, DecodeError> {
        // Unsigned, as PostgreSQL reads it (`pq_getmsgint(msg, 2)`): up to
        // 65,535 parameters or formats.
        let n = usize::from(self.i16()?.cast_unsigned());
        if n.saturating_mul(min_item_bytes) > self.rest.len() {
            return Err(DecodeError::Truncated);
        }
        Ok(n)
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    /// Every byte of the body must have been read.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes(self.rest.len()))
        }
    }
}
