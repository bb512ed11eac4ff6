//! What the tree walk records about one statement, and how those records
//! resolve into tables read / written.
//!
//! Owns three rules the walk itself cannot apply because the protobuf field
//! order puts the deciding fact after the table reference:
//! - CTE scoping: an unqualified name that matches a CTE visible at that point
//!   is not a table (`WITH` comes after `FROM` in `SelectStmt`'s fields). In a
//!   non-recursive `WITH`, CTE *i* sees only CTEs before it, so
//!   `WITH t AS (SELECT * FROM t)` reads the real table `t`.
//! - Row locks: tables in the FROM of a `SELECT ... FOR UPDATE/SHARE` are
//!   listed as written (`locking_clause` comes after `from_clause`).
//! - DML targets are never CTE-filtered: `INSERT INTO x` always names a real
//!   relation, even when a CTE called `x` exists.

/// A statement node that can own a `WITH` clause or a `FROM` list.
pub(crate) fn is_owner(name: &str) -> bool {
    matches!(
        name,
        "SelectStmt" | "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt"
    )
}

/// Is a relation reached through `parent.field` the statement's target
/// (written, altered, locked, truncated, vacuumed, granted on...)? Everything
/// else a statement names is a source (read). The caller demotes the
/// targets of statements that only read them (COPY TO, ANALYZE, EXPLAIN).
pub(crate) fn is_target(parent: &str, field: &str) -> bool {
    match field {
        "relation" => matches!(
            parent,
            "InsertStmt"
                | "UpdateStmt"
                | "DeleteStmt"
                | "MergeStmt"
                | "CopyStmt"
                | "CreateStmt"
                | "AlterTableStmt"
                | "IndexStmt"
                | "CreateTrigStmt"
                | "RuleStmt"
                | "RefreshMatViewStmt"
                | "ClusterStmt"
                | "ReindexStmt"
                | "RenameStmt"
                | "AlterObjectSchemaStmt"
                | "AlterOwnerStmt"
                | "AlterObjectDependsStmt"
        ),
        "rel" => parent == "IntoClause",
        "view" => parent == "ViewStmt",
        "table" => matches!(parent, "CreatePolicyStmt" | "AlterPolicyStmt"),
        "relations" => matches!(parent, "TruncateStmt" | "LockStmt" | "CreateStatsStmt"),
        "rels" => parent == "VacuumStmt",
        "sequence" => matches!(parent, "CreateSeqStmt" | "AlterSeqStmt"),
        "objects" => parent == "GrantStmt",
        "name" => parent == "PartitionCmd",
        _ => false,
    }
}

/// An owner node above a table reference, and where below it we were.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Anc {
    pub id: u32,
    /// Inside the owner's `WITH`, in CTE number `i`.
    pub cte_idx: Option<u32>,
    /// Inside the owner's FROM list.
    pub via_from: bool,
}

#[derive(Debug)]
pub(crate) struct RelRec {
    pub name: String,
    pub relname: String,
    pub qualified: bool,
    pub alias: Option<String>,
    pub target: bool,
    pub parent: &'static str,
    pub ancs: Vec<Anc>,
}

#[derive(Debug)]
pub(crate) struct Cte {
    pub owner: u32,
    pub idx: u32,
    pub name: String,
}

/// Unresolved records, filled in tree order by the walk.
#[derive(Debug, Default)]
pub(crate) struct Raw {
    pub rels: Vec<RelRec>,
    pub ctes: Vec<Cte>,
    pub recursive: Vec<u32>,
    /// `SELECT` node id with a locking clause, and its `OF` names (empty: all).
    pub locking: Vec<(u32, Vec<String>)>,
    pub functions: Vec<String>,
    /// INSERT/UPDATE/DELETE/MERGE nodes anywhere, the top-level one included.
    pub dml_nodes: u32,
    /// Their commands ("INSERT", ...), in tree order.
    pub dml_commands: Vec<&'static str>,
    /// EXECUTE nodes anywhere (`CREATE TABLE x AS EXECUTE p`).
    pub execute_nodes: u32,
}

/// One table reference after resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rel {
    pub name: String,
    pub written: bool,
    /// The node that named it (`CopyStmt`, `VacuumStmt`, `SelectStmt`...).
    pub parent: &'static str,
}

#[derive(Debug, Default)]
pub(crate) struct Facts {
    pub rels: Vec<Rel>,
    pub functions: Vec<String>,
    pub dml_nodes: u32,
    pub dml_commands: Vec<&'static str>,
    pub execute_nodes: u32,
    pub locking: bool,
}

impl Raw {
    fn is_cte_ref(&self, r: &RelRec) -> bool {
        if r.qualified {
            return false;
        }
        r.ancs.iter().any(|a| {
            let all = a.cte_idx.is_none() || self.recursive.contains(&a.id);
            self.ctes
                .iter()
                .any(|c| c.owner == a.id && c.name == r.relname && (all || a.cte_idx.is_some_and(|i| c.idx < i)))
        })
    }

    /// Is this reference row-locked by a `FOR UPDATE/SHARE` above it?
    fn is_locked(&self, r: &RelRec) -> bool {
        r.ancs.iter().filter(|a| a.via_from).any(|a| {
            self.locking
                .iter()
                .any(|(id, of)| *id == a.id && (of.is_empty() || names_in(r, of) || self.unmatched_of(a.id, of)))
        })
    }

    /// An `OF` name that matches no table or alias directly (a subquery
    /// alias, say): lock everything under that SELECT rather than guess.
    fn unmatched_of(&self, select: u32, of: &[String]) -> bool {
        of.iter().any(|n| {
            !self
                .rels
                .iter()
                .any(|r| r.ancs.iter().any(|a| a.id == select && a.via_from) && names_in(r, std::slice::from_ref(n)))
        })
    }

    pub(crate) fn resolve(self) -> Facts {
        let mut rels = Vec::with_capacity(self.rels.len());
        for r in &self.rels {
            let written = if r.target {
                true
            } else if self.is_cte_ref(r) {
                continue;
            } else {
                self.is_locked(r)
            };
            rels.push(Rel {
                name: r.name.clone(),
                written,
                parent: r.parent,
            });
        }
        Facts {
            rels,
            functions: self.functions,
            dml_nodes: self.dml_nodes,
            dml_commands: self.dml_commands,
            execute_nodes: self.execute_nodes,
            locking: !self.locking.is_empty(),
        }
    }
}

fn names_in(r: &RelRec, of: &[String]) -> bool {
    of.iter()
        .any(|n| r.alias.as_deref() == Some(n.as_str()) || (r.alias.is_none() && *n == r.relname))
}

/// A name part as a reader should see it: bare, unless it holds `.` or `"`
/// (then quoted), so `"shop.orders"` never reads as schema `shop`.
pub(crate) fn push_part(out: &mut String, part: &str) {
    if !out.is_empty() {
        out.push('.');
    }
    if part.contains(['.', '"']) {
        out.push('"');
        out.push_str(&part.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(part);
    }
}

/// The parts of a name as [`push_part`] renders it: `a.b` is `["a", "b"]`,
/// `"a.b".c` is `["a.b", "c"]` (quotes undone). Names in `tables_read` and
/// `tables_written` have one part (`orders`), two (`public.orders`) or
/// three (`shop.public.orders`, a database name first).
pub fn name_parts(rendered: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut part = String::new();
    let mut chars = rendered.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                part.push('"');
            }
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut part)),
            c => part.push(c),
        }
    }
    parts.push(part);
    parts
}

/// A name from its parts, as [`push_part`] renders it.
pub fn render_name<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for p in parts {
        push_part(&mut out, p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_names_split_back_into_their_parts() {
        for parts in [
            vec!["orders"],
            vec!["public", "orders"],
            vec!["shop", "public", "orders"],
            vec!["a.b", "c"],
            vec!["x\"y", "z.w"],
        ] {
            let rendered = render_name(parts.iter().copied());
            assert_eq!(name_parts(&rendered), parts, "{rendered}");
        }
        assert_eq!(render_name(["a.b", "c"]), "\"a.b\".c");
    }
}
