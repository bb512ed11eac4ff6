//! A complete walk of one pg_query parse tree, recording table references,
//! CTE names, row-lock clauses, function calls and DML nodes (see `facts`).
//!
//! Why a serde `Serializer`: pg_query's protobuf types all derive
//! `serde::Serialize`, and serializing into this walker visits *every* field
//! of every node with its struct and field name, with no allocation for the
//! tree itself. pg_query's own `ParseResult::tables` follows a hand-picked
//! subset of fields and misses tables (SELECT INTO targets, sub-selects in
//! VALUES, RETURNING, ON CONFLICT, LIMIT, DECLARE CURSOR, PREPARE...). A
//! generic walk cannot forget a field, so a table hidden anywhere is seen.

use serde::Serialize;
use serde::ser::{self, Impossible};

use crate::facts::{Anc, Facts, Raw, RelRec, is_owner, is_target, push_part};

/// Walks one statement node. None if the tree holds a shape the walker does
/// not know (no pg_query 18.1 type does): the caller must then assume the
/// worst rather than trust a walk that stopped half-way.
pub(crate) fn walk(node: &pg_query::NodeEnum) -> Option<Facts> {
    let mut w = Walker::default();
    node.serialize(&mut w).ok()?;
    Some(w.raw.resolve())
}

#[derive(Debug)]
pub(crate) struct WalkError;

impl std::fmt::Display for WalkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("walk error")
    }
}
impl std::error::Error for WalkError {}
impl ser::Error for WalkError {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        WalkError
    }
}

const SEQ: &str = "[]";

struct Frame {
    name: &'static str,
    field: &'static str,
    id: u32,
    /// For SEQ frames: the element being visited.
    index: u32,
}

#[derive(Default)]
struct RelBuild {
    catalog: String,
    schema: String,
    relname: String,
    alias: Option<String>,
}

#[derive(Default)]
struct Walker {
    stack: Vec<Frame>,
    next_id: u32,
    raw: Raw,
    rel: Option<RelBuild>,
    func_parts: Vec<String>,
}

/// Wrapper frames that carry no meaning for "who named this relation".
fn transparent(name: &str) -> bool {
    matches!(name, "Node" | SEQ | "List" | "VacuumRelation")
}

impl Walker {
    fn push(&mut self, name: &'static str) {
        self.next_id += 1;
        self.stack.push(Frame {
            name,
            field: "",
            id: self.next_id,
            index: 0,
        });
    }

    /// The nearest meaningful frame below stack position `below`.
    fn parent_of(&self, below: usize) -> Option<&Frame> {
        self.stack.get(..below)?.iter().rev().find(|f| !transparent(f.name))
    }

    fn top_parent(&self) -> Option<&Frame> {
        self.parent_of(self.stack.len().saturating_sub(1))
    }

    fn ancestors(&self) -> Vec<Anc> {
        let mut out = Vec::new();
        for (i, f) in self.stack.iter().enumerate() {
            if !is_owner(f.name) {
                continue;
            }
            // Owner(field=with_clause) -> WithClause(field=ctes) -> SEQ(index).
            let cte_idx = (f.field == "with_clause")
                .then(|| self.stack.get(i + 2).filter(|s| s.name == SEQ).map(|s| s.index))
                .flatten();
            out.push(Anc {
                id: f.id,
                cte_idx,
                via_from: f.field == "from_clause",
            });
        }
        out
    }

    fn finish_rel(&mut self) {
        let Some(b) = self.rel.take() else { return };
        let (pname, pfield) = self.top_parent().map(|p| (p.name, p.field)).unwrap_or(("", ""));
        match pname {
            // `FOR UPDATE OF x`: x names a FROM item, it is not a reference.
            "LockingClause" => {
                if let Some(last) = self.raw.locking.last_mut() {
                    last.1.push(b.relname);
                }
                return;
            }
            // `CREATE TYPE t AS (...)` names a type, not a table.
            "CompositeTypeStmt" => return,
            _ => {}
        }
        let mut name = String::new();
        for part in [&b.catalog, &b.schema, &b.relname] {
            if !part.is_empty() {
                push_part(&mut name, part);
            }
        }
        let rec = RelRec {
            name,
            qualified: !b.schema.is_empty() || !b.catalog.is_empty(),
            relname: b.relname,
            alias: b.alias,
            target: is_target(pname, pfield),
            parent: pname,
            ancs: self.ancestors(),
        };
        self.raw.rels.push(rec);
    }

    /// Records a CTE name against the node owning its WITH clause.
    fn record_cte(&mut self, name: String) {
        // CommonTableExpr <- Node <- SEQ(index) <- WithClause <- owner.
        let n = self.stack.len();
        let idx = self
            .stack
            .get(n.wrapping_sub(3))
            .filter(|f| f.name == SEQ)
            .map(|f| f.index);
        let owner = self
            .stack
            .get(n.wrapping_sub(5))
            .filter(|f| is_owner(f.name))
            .map(|f| f.id);
        if let (Some(idx), Some(owner)) = (idx, owner) {
            self.raw.ctes.push(crate::facts::Cte { owner, idx, name });
        }
    }
}

/// What a leaf serialized to, for the few leaves the walk reads.
enum Leaf {
    Str(String),
    Bool(bool),
    Other,
}

/// Reads one leaf value (a string or a bool) out of a `Serialize` value.
struct Grab;

macro_rules! grab_other {
    ($($m:ident($t:ty)),*) => {$(
        fn $m(self, _: $t) -> Result<Leaf, WalkError> { Ok(Leaf::Other) }
    )*};
}

impl ser::Serializer for Grab {
    type Ok = Leaf;
    type Error = WalkError;
    type SerializeSeq = Impossible<Leaf, WalkError>;
    type SerializeTuple = Impossible<Leaf, WalkError>;
    type SerializeTupleStruct = Impossible<Leaf, WalkError>;
    type SerializeTupleVariant = Impossible<Leaf, WalkError>;
    type SerializeMap = Impossible<Leaf, WalkError>;
    type SerializeStruct = Impossible<Leaf, WalkError>;
    type SerializeStructVariant = Impossible<Leaf, WalkError>;

    fn serialize_str(self, v: &str) -> Result<Leaf, WalkError> {
        Ok(Leaf::Str(v.to_owned()))
    }
    fn serialize_bool(self, v: bool) -> Result<Leaf, WalkError> {
        Ok(Leaf::Bool(v))
    }
    grab_other!(
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str)
    );
    fn serialize_none(self) -> Result<Leaf, WalkError> {
        Ok(Leaf::Other)
    }
    fn serialize_some<T: ?Sized + Serialize>(self, v: &T) -> Result<Leaf, WalkError> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<Leaf, WalkError> {
        Ok(Leaf::Other)
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<Leaf, WalkError> {
        Ok(Leaf::Other)
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, _: &'static str, v: &T) -> Result<Leaf, WalkError> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Leaf, WalkError> {
        Ok(Leaf::Other)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, WalkError> {
        Err(WalkError)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, WalkError> {
        Err(WalkError)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, WalkError> {
        Err(WalkError)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, WalkError> {
        Err(WalkError)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, WalkError> {
        Err(WalkError)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, WalkError> {
        Err(WalkError)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, WalkError> {
        Err(WalkError)
    }
}

fn grab_str<T: ?Sized + Serialize>(v: &T) -> String {
    match v.serialize(Grab) {
        Ok(Leaf::Str(s)) => s,
        _ => String::new(),
    }
}

mod visit;
