//! Unit tests of the cheap lexer's token boundaries.

use super::*;

fn kinds(sql: &str) -> Vec<(Kind, &str)> {
    let mut lx = Lexer::new(sql);
    let mut out = Vec::new();
    while let Step::Token(t) = lx.next_step() {
        out.push((t.kind, &sql[t.start..t.end]));
    }
    out
}

#[test]
fn lexes_tricky_tokens() {
    use Kind::*;
    assert_eq!(kinds("a=-1"), vec![(Word, "a"), (Op, "="), (Op, "-"), (Number, "1")]);
    assert_eq!(kinds("a @-1"), vec![(Word, "a"), (Op, "@-"), (Number, "1")]);
    assert_eq!(kinds("1+--c\n2"), vec![(Number, "1"), (Op, "+"), (Number, "2")]);
    assert_eq!(kinds("foo$$x$$"), vec![(Word, "foo$$x$$")]);
    assert_eq!(kinds("$1 $12x"), vec![(Param, "$1"), (Junk, "$12x")]);
    assert_eq!(
        kinds("1e5 1e 0x1F .5 1_000"),
        vec![
            (Number, "1e5"),
            (Junk, "1e"),
            (Number, "0x1F"),
            (Number, ".5"),
            (Number, "1_000")
        ]
    );
    assert_eq!(kinds("1..2"), vec![(Number, "1"), (Punct, ".."), (Number, "2")]);
    assert_eq!(
        kinds("0x 0x_1F 0b12 1_ 1__0 1.e5"),
        vec![
            (Junk, "0x"),
            (Number, "0x_1F"),
            (Junk, "0b12"),
            (Junk, "1_"),
            (Junk, "1__0"),
            (Number, "1.e5")
        ]
    );
    assert_eq!(kinds("x::int"), vec![(Word, "x"), (Punct, "::"), (Word, "int")]);
    assert_eq!(kinds(r"E'a\'b' 'c\'"), vec![(Str, r"E'a\'b'"), (Str, r"'c\'")]);
    assert_eq!(kinds("$a$ $b$ x $a$"), vec![(Str, "$a$ $b$ x $a$")]);
    assert_eq!(kinds("$ x"), vec![(Junk, "$"), (Word, "x")]);
}

#[test]
fn string_continuation_needs_a_newline_and_no_block_comment() {
    let mut lx = Lexer::new("'a' --c\n 'b' 'c' /*x*/\n'd'");
    let mut cont = Vec::new();
    while let Step::Token(t) = lx.next_step() {
        cont.push(t.continues);
    }
    assert_eq!(cont, vec![false, true, false, false]);
}

#[test]
fn unterminated_reports_its_start() {
    assert_eq!(
        Lexer::new("select 'abc").next_step(),
        Step::Token(Token {
            kind: Kind::Word,
            start: 0,
            end: 6,
            continues: false
        })
    );
    let mut lx = Lexer::new("x /* /* */");
    lx.next_step();
    assert_eq!(lx.next_step(), Step::Unterminated(2));
}
