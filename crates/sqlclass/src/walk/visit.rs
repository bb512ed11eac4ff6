//! The `serde::Serializer` plumbing of the tree walk: keeps the frame stack
//! (struct name + current field, sequence index) and hands the few leaves
//! the walk cares about (RangeVar names, aliases, CTE names, function names,
//! `WITH RECURSIVE`) to `Walker`. Everything else is visited and dropped.

use serde::Serialize;
use serde::ser::{self, Impossible};

use super::{RelBuild, SEQ, WalkError, Walker, grab_str};
use crate::facts::is_owner;

type R = Result<(), WalkError>;

macro_rules! ignore {
    ($($m:ident($t:ty)),*) => {$(
        fn $m(self, _: $t) -> R { Ok(()) }
    )*};
}

impl ser::Serializer for &mut Walker {
    type Ok = ();
    type Error = WalkError;
    type SerializeSeq = Self;
    type SerializeTuple = Impossible<(), WalkError>;
    type SerializeTupleStruct = Impossible<(), WalkError>;
    type SerializeTupleVariant = Impossible<(), WalkError>;
    type SerializeMap = Impossible<(), WalkError>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<(), WalkError>;

    ignore!(
        serialize_bool(bool),
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
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str)
    );

    fn serialize_none(self) -> R {
        Ok(())
    }
    fn serialize_some<T: ?Sized + Serialize>(self, v: &T) -> R {
        v.serialize(self)
    }
    fn serialize_unit(self) -> R {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> R {
        Ok(())
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, _: &'static str, v: &T) -> R {
        v.serialize(self)
    }
    /// A protobuf `oneof` (the `Node` enum, `A_Const`'s value): the variant's
    /// payload is a struct that names itself, so just descend.
    fn serialize_newtype_variant<T: ?Sized + Serialize>(self, _: &'static str, _: u32, _: &'static str, v: &T) -> R {
        v.serialize(self)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self, WalkError> {
        self.push(SEQ);
        Ok(self)
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
    fn serialize_struct(self, name: &'static str, _: usize) -> Result<Self, WalkError> {
        self.push(name);
        match name {
            "RangeVar" => self.rel = Some(RelBuild::default()),
            "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => {
                self.raw.dml_nodes += 1;
                self.raw.dml_commands.push(match name {
                    "InsertStmt" => "INSERT",
                    "UpdateStmt" => "UPDATE",
                    "DeleteStmt" => "DELETE",
                    _ => "MERGE",
                });
            }
            "ExecuteStmt" => self.raw.execute_nodes += 1,
            "LockingClause" => {
                if let Some(owner) = self.top_parent().filter(|p| is_owner(p.name)).map(|p| p.id) {
                    self.raw.locking.push((owner, Vec::new()));
                }
            }
            _ => {}
        }
        Ok(self)
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

impl ser::SerializeSeq for &mut Walker {
    type Ok = ();
    type Error = WalkError;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, v: &T) -> R {
        v.serialize(&mut **self)?;
        if let Some(f) = self.stack.last_mut() {
            f.index += 1;
        }
        Ok(())
    }
    fn end(self) -> R {
        self.stack.pop();
        Ok(())
    }
}

impl ser::SerializeStruct for &mut Walker {
    type Ok = ();
    type Error = WalkError;

    fn serialize_field<T: ?Sized + Serialize>(&mut self, key: &'static str, v: &T) -> R {
        let name = match self.stack.last_mut() {
            Some(f) => {
                f.field = key;
                f.name
            }
            None => "",
        };
        match (name, key) {
            ("RangeVar", "catalogname" | "schemaname" | "relname") => {
                let s = grab_str(v);
                if let Some(b) = self.rel.as_mut() {
                    match key {
                        "catalogname" => b.catalog = s,
                        "schemaname" => b.schema = s,
                        _ => b.relname = s,
                    }
                }
                Ok(())
            }
            ("Alias", "aliasname") => {
                if self.top_parent().is_some_and(|p| p.name == "RangeVar")
                    && let Some(b) = self.rel.as_mut()
                {
                    b.alias = Some(grab_str(v));
                }
                Ok(())
            }
            ("CommonTableExpr", "ctename") => {
                let s = grab_str(v);
                self.record_cte(s);
                Ok(())
            }
            ("WithClause", "recursive") => {
                if matches!(v.serialize(super::Grab), Ok(super::Leaf::Bool(true)))
                    && let Some(owner) = self.top_parent().filter(|p| is_owner(p.name)).map(|p| p.id)
                {
                    self.raw.recursive.push(owner);
                }
                Ok(())
            }
            ("String", "sval") => {
                if self
                    .top_parent()
                    .is_some_and(|p| p.name == "FuncCall" && p.field == "funcname")
                {
                    self.func_parts.push(grab_str(v));
                }
                Ok(())
            }
            ("FuncCall", "funcname") => {
                self.func_parts.clear();
                v.serialize(&mut **self)?;
                if !self.func_parts.is_empty() {
                    let f = self.func_parts.join(".");
                    self.raw.functions.push(f);
                }
                Ok(())
            }
            _ => v.serialize(&mut **self),
        }
    }

    fn end(self) -> R {
        if self.stack.last().is_some_and(|f| f.name == "RangeVar") {
            self.finish_rel();
        }
        self.stack.pop();
        Ok(())
    }
}
