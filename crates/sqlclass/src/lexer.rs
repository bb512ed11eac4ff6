//! The cheap hand-written PostgreSQL lexer shared by `split` and `fingerprint`.
//!
//! It owns token boundaries only: what is a string, a quoted identifier, a
//! comment, a number, a parameter, an operator. It never builds a tree. The
//! rules follow PostgreSQL 18's `scan.l` with `standard_conforming_strings = on`
//! (plain `'...'` strings take no backslash escapes, `E'...'` strings do).
//!
//! Every token boundary falls on an ASCII byte or the end of the input (bytes of
//! 0x80 and up are identifier characters, as in PostgreSQL), so slicing the `&str`
//! at token offsets is always on a char boundary.

/// What a token is; only as fine-grained as `split` and `fingerprint` need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Unquoted identifier or keyword.
    Word,
    /// `"..."` or `U&"..."`.
    QuotedIdent,
    /// Any string constant: `'...'`, `E'...'`, `B'...'`, `X'...'`, `N'...'`,
    /// `U&'...'`, `$tag$...$tag$`.
    Str,
    /// Numeric constant (integer, decimal, real, hex/octal/binary integer).
    Number,
    /// `$1`, `$2`, ...
    Param,
    /// Operator made of `~!@#^&|`?+-*/%<>=`.
    Op,
    /// `;` (statement separator when outside parentheses).
    Semi,
    /// Any other single punctuation: `( ) [ ] , . :` and `::`, `:=`, `..`.
    Punct,
    /// Text PostgreSQL would refuse (e.g. `1abc`, `$1x`, a lone `$`, `\`).
    /// Kept verbatim so it never looks like a literal.
    Junk,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
    /// The gap before this token was whitespace and `--` comments only and
    /// held a newline: PostgreSQL glues two string constants separated like
    /// that into one constant (`'a'` NEWLINE `'b'` is `'ab'`).
    pub continues: bool,
}

/// One lexing step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Token(Token),
    /// A quote, dollar quote or block comment starting at this offset never
    /// ends: the server will refuse the text.
    Unterminated(usize),
    End,
}

pub(crate) struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    /// Read plain `'...'` strings as the server does with
    /// `standard_conforming_strings = off`: backslash escapes, like `E'...'`.
    backslash_strings: bool,
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_cont(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

fn is_op_char(b: u8) -> bool {
    matches!(
        b,
        b'~' | b'!'
            | b'@'
            | b'#'
            | b'^'
            | b'&'
            | b'|'
            | b'`'
            | b'?'
            | b'+'
            | b'-'
            | b'*'
            | b'/'
            | b'%'
            | b'<'
            | b'>'
            | b'='
    )
}

/// PostgreSQL's whitespace set (space, tab, newline, CR, form feed, vertical tab).
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' | b'\x0b')
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(src: &'a str) -> Self {
        Lexer {
            src: src.as_bytes(),
            pos: 0,
            backslash_strings: false,
        }
    }

    /// A lexer that reads `'...'` (and `N'...'`) strings as the server does
    /// with `standard_conforming_strings = off`.
    pub(crate) fn with_backslash_strings(src: &'a str) -> Self {
        Lexer {
            backslash_strings: true,
            ..Lexer::new(src)
        }
    }

    fn at(&self, i: usize) -> u8 {
        self.src.get(i).copied().unwrap_or(0)
    }

    /// Skips whitespace and comments. Returns (continues, unterminated comment start).
    fn skip_trivia(&mut self) -> (bool, Option<usize>) {
        let mut newline = false;
        let mut block = false;
        loop {
            let b = self.at(self.pos);
            if self.pos >= self.src.len() {
                break;
            }
            if is_space(b) {
                newline |= b == b'\n' || b == b'\r';
                self.pos += 1;
            } else if b == b'-' && self.at(self.pos + 1) == b'-' {
                while self.pos < self.src.len() && !matches!(self.at(self.pos), b'\n' | b'\r') {
                    self.pos += 1;
                }
            } else if b == b'/' && self.at(self.pos + 1) == b'*' {
                // Block comments nest in PostgreSQL (unlike C).
                let start = self.pos;
                block = true;
                let mut depth = 0usize;
                loop {
                    if self.pos >= self.src.len() {
                        return (false, Some(start));
                    }
                    if self.at(self.pos) == b'/' && self.at(self.pos + 1) == b'*' {
                        depth += 1;
                        self.pos += 2;
                    } else if self.at(self.pos) == b'*' && self.at(self.pos + 1) == b'/' {
                        depth -= 1;
                        self.pos += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        self.pos += 1;
                    }
                }
            } else {
                break;
            }
        }
        (newline && !block, None)
    }

    /// Scans a quoted body starting after the opening `quote`; `''`-style
    /// doubling escapes the quote, and with `backslash` so does `\`.
    fn quoted(&mut self, quote: u8, backslash: bool) -> bool {
        loop {
            let Some(&b) = self.src.get(self.pos) else {
                return false;
            };
            self.pos += 1;
            if backslash && b == b'\\' {
                if self.pos >= self.src.len() {
                    return false;
                }
                self.pos += 1;
            } else if b == quote {
                if self.at(self.pos) == quote {
                    self.pos += 1;
                } else {
                    return true;
                }
            }
        }
    }

    /// At a `$` that is not a parameter: a `$tag$` opener, or None.
    fn dollar_tag_len(&self) -> Option<usize> {
        let mut i = self.pos + 1;
        if self.at(i) != b'$' {
            if !is_ident_start(self.at(i)) {
                return None;
            }
            // Tags are identifier characters without `$`.
            while i < self.src.len() && is_ident_cont(self.at(i)) && self.at(i) != b'$' {
                i += 1;
            }
            if self.at(i) != b'$' {
                return None;
            }
        }
        Some(i + 1 - self.pos)
    }

    fn eat_while(&mut self, f: impl Fn(u8) -> bool) {
        while self.pos < self.src.len() && f(self.at(self.pos)) {
            self.pos += 1;
        }
    }

    /// Eats `digit (_? digit)*` for the given digit class; false if none.
    fn digits(&mut self, is_digit: fn(u8) -> bool) -> bool {
        if !is_digit(self.at(self.pos)) {
            return false;
        }
        loop {
            if is_digit(self.at(self.pos)) {
                self.pos += 1;
            } else if self.at(self.pos) == b'_' && is_digit(self.at(self.pos + 1)) {
                self.pos += 2;
            } else {
                return true;
            }
        }
    }

    /// A number starts here (digit, or `.` + digit). Returns Number, or Junk
    /// where PostgreSQL 16+ refuses it: identifier characters trailing it
    /// (`1abc`, `1_`, `0b12`) or a radix prefix without digits (`0x`).
    fn number(&mut self) -> Kind {
        let start = self.pos;
        let radix = self.at(self.pos + 1).to_ascii_lowercase();
        let ok = if self.at(start) == b'0' && matches!(radix, b'x' | b'o' | b'b') {
            self.pos += 2;
            // PostgreSQL allows one `_` right after the prefix: 0x_1F.
            if self.at(self.pos) == b'_' {
                self.pos += 1;
            }
            self.digits(match radix {
                b'x' => |b: u8| b.is_ascii_hexdigit(),
                b'o' => |b: u8| (b'0'..=b'7').contains(&b),
                _ => |b: u8| b == b'0' || b == b'1',
            })
        } else {
            let int = self.digits(|b| b.is_ascii_digit());
            // `1..2` is an integer followed by `..`, not `1.` and `.2`.
            if self.at(self.pos) == b'.' && self.at(self.pos + 1) != b'.' {
                self.pos += 1;
                self.digits(|b| b.is_ascii_digit());
            }
            let sign = self.at(self.pos + 1);
            if matches!(self.at(self.pos), b'e' | b'E')
                && (sign.is_ascii_digit() || (matches!(sign, b'+' | b'-') && self.at(self.pos + 2).is_ascii_digit()))
            {
                self.pos += if sign.is_ascii_digit() { 1 } else { 2 };
                self.digits(|b| b.is_ascii_digit());
            }
            int || self.pos > start + 1
        };
        if !ok || is_ident_cont(self.at(self.pos)) {
            self.eat_while(is_ident_cont);
            return Kind::Junk;
        }
        Kind::Number
    }

    /// An operator run, cut where PostgreSQL cuts it: before `--` or `/*`,
    /// and trailing `+`/`-` dropped unless the operator holds one of
    /// `~!@#%^&|`?` (so `=-1` is `=` then `-1`).
    fn operator(&mut self) {
        let start = self.pos;
        while self.pos < self.src.len() && is_op_char(self.at(self.pos)) {
            let (b, n) = (self.at(self.pos), self.at(self.pos + 1));
            if self.pos > start && ((b == b'-' && n == b'-') || (b == b'/' && n == b'*')) {
                break;
            }
            self.pos += 1;
        }
        let op = self.src.get(start..self.pos).unwrap_or_default();
        let special = op.iter().any(|b| b"~!@#%^&|`?".contains(b));
        if op.len() > 1 && !special {
            while self.pos > start + 1 && matches!(self.at(self.pos - 1), b'+' | b'-') {
                self.pos -= 1;
            }
        }
    }

    pub(crate) fn next_step(&mut self) -> Step {
        let (continues, open_comment) = self.skip_trivia();
        if let Some(start) = open_comment {
            return Step::Unterminated(start);
        }
        let start = self.pos;
        if start >= self.src.len() {
            return Step::End;
        }
        let b = self.at(start);
        let next = self.at(start + 1);
        let lower = b.to_ascii_lowercase();
        let kind = if b == b'\'' {
            self.pos += 1;
            if !self.quoted(b'\'', self.backslash_strings) {
                return Step::Unterminated(start);
            }
            Kind::Str
        } else if matches!(lower, b'e' | b'b' | b'x' | b'n') && next == b'\'' {
            self.pos += 2;
            let backslash = lower == b'e' || (lower == b'n' && self.backslash_strings);
            if !self.quoted(b'\'', backslash) {
                return Step::Unterminated(start);
            }
            Kind::Str
        } else if lower == b'u' && next == b'&' && matches!(self.at(start + 2), b'\'' | b'"') {
            let quote = self.at(start + 2);
            self.pos += 3;
            if !self.quoted(quote, false) {
                return Step::Unterminated(start);
            }
            if quote == b'"' { Kind::QuotedIdent } else { Kind::Str }
        } else if b == b'"' {
            self.pos += 1;
            if !self.quoted(b'"', false) {
                return Step::Unterminated(start);
            }
            Kind::QuotedIdent
        } else if is_ident_start(b) {
            self.eat_while(is_ident_cont);
            Kind::Word
        } else if b.is_ascii_digit() || (b == b'.' && next.is_ascii_digit()) {
            self.number()
        } else if b == b'$' {
            if next.is_ascii_digit() {
                self.pos += 1;
                self.eat_while(|b| b.is_ascii_digit());
                if is_ident_cont(self.at(self.pos)) {
                    self.eat_while(is_ident_cont);
                    Kind::Junk
                } else {
                    Kind::Param
                }
            } else if let Some(len) = self.dollar_tag_len() {
                let tag = self.src.get(start..start + len).unwrap_or_default();
                let body = start + len;
                match self.src.get(body..).and_then(|rest| find(rest, tag)) {
                    Some(i) => {
                        self.pos = body + i + len;
                        Kind::Str
                    }
                    None => return Step::Unterminated(start),
                }
            } else {
                self.pos += 1;
                Kind::Junk
            }
        } else if is_op_char(b) {
            self.operator();
            Kind::Op
        } else if b == b';' {
            self.pos += 1;
            Kind::Semi
        } else if (b == b':' && matches!(next, b':' | b'=')) || (b == b'.' && next == b'.') {
            self.pos += 2;
            Kind::Punct
        } else if matches!(b, b'(' | b')' | b'[' | b']' | b',' | b'.' | b':') {
            self.pos += 1;
            Kind::Punct
        } else {
            // Control characters, `\`, `{`, `}`: the server's grammar rejects them.
            self.pos += 1;
            Kind::Junk
        };
        Step::Token(Token {
            kind,
            start,
            end: self.pos,
            continues,
        })
    }
}

/// Byte-substring search (dollar-quote closing tags are short; naive is fine).
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests;
