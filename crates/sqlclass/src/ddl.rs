//! Class and command of the DDL statement types (CREATE / ALTER / DROP /
//! COMMENT / SECURITY LABEL of everything that is not a role), and the
//! `Unknown` fallback for any statement type nobody listed.

use std::borrow::Cow;

use pg_query::NodeEnum as N;
use pg_query::protobuf::ObjectType as O;

use crate::Class::*;
use crate::names::{self, object};
use crate::statement::{Base, alter, base, named_relation, set_lifts};

/// DDL statements (and Unknown for anything unlisted).
pub(crate) fn classify_ddl(node: &N) -> Base {
    let command: Cow<'static, str> = match node {
        N::CreateStmt(_) => "CREATE TABLE".into(),
        N::CreateTableAsStmt(c) if c.is_select_into => "SELECT INTO".into(),
        N::CreateTableAsStmt(c) if names::is_type(c.objtype, O::ObjectMatview) => "CREATE MATERIALIZED VIEW".into(),
        N::CreateTableAsStmt(_) => "CREATE TABLE AS".into(),
        N::ViewStmt(_) => "CREATE VIEW".into(),
        N::IndexStmt(_) => "CREATE INDEX".into(),
        N::CreateSeqStmt(_) => "CREATE SEQUENCE".into(),
        N::AlterSeqStmt(_) => "ALTER SEQUENCE".into(),
        N::CreateSchemaStmt(_) => "CREATE SCHEMA".into(),
        N::CreateFunctionStmt(f) => if f.is_procedure {
            "CREATE PROCEDURE"
        } else {
            "CREATE FUNCTION"
        }
        .into(),
        N::AlterFunctionStmt(f) => alter(f.objtype).into(),
        N::CreateTrigStmt(t) => if t.isconstraint {
            "CREATE CONSTRAINT TRIGGER"
        } else {
            "CREATE TRIGGER"
        }
        .into(),
        N::CreateEventTrigStmt(_) => "CREATE EVENT TRIGGER".into(),
        N::AlterEventTrigStmt(_) => "ALTER EVENT TRIGGER".into(),
        N::RuleStmt(_) => "CREATE RULE".into(),
        N::CreatePolicyStmt(_) => "CREATE POLICY".into(),
        N::AlterPolicyStmt(_) => "ALTER POLICY".into(),
        N::CreateExtensionStmt(_) => "CREATE EXTENSION".into(),
        N::AlterExtensionStmt(_) | N::AlterExtensionContentsStmt(_) => "ALTER EXTENSION".into(),
        N::CreateDomainStmt(_) => "CREATE DOMAIN".into(),
        N::AlterDomainStmt(_) => "ALTER DOMAIN".into(),
        N::DefineStmt(d) => format!("CREATE {}", object(d.kind)).into(),
        N::CompositeTypeStmt(_) | N::CreateEnumStmt(_) | N::CreateRangeStmt(_) => "CREATE TYPE".into(),
        N::AlterEnumStmt(_) | N::AlterTypeStmt(_) => "ALTER TYPE".into(),
        N::CreatedbStmt(_) => "CREATE DATABASE".into(),
        N::AlterDatabaseStmt(_) | N::AlterDatabaseRefreshCollStmt(_) => "ALTER DATABASE".into(),
        N::AlterDatabaseSetStmt(s) => {
            let mut b = base(Ddl, "ALTER DATABASE");
            b.lifts = s.setstmt.as_ref().is_some_and(set_lifts);
            return b;
        }
        N::DropdbStmt(_) => "DROP DATABASE".into(),
        N::CreateTableSpaceStmt(_) => "CREATE TABLESPACE".into(),
        N::DropTableSpaceStmt(_) => "DROP TABLESPACE".into(),
        N::AlterTableSpaceOptionsStmt(_) => "ALTER TABLESPACE".into(),
        N::AlterTableMoveAllStmt(m) => alter(m.objtype).into(),
        N::CreateFdwStmt(_) => "CREATE FOREIGN DATA WRAPPER".into(),
        N::AlterFdwStmt(_) => "ALTER FOREIGN DATA WRAPPER".into(),
        N::CreateForeignServerStmt(_) => "CREATE SERVER".into(),
        N::AlterForeignServerStmt(_) => "ALTER SERVER".into(),
        N::CreateForeignTableStmt(_) => "CREATE FOREIGN TABLE".into(),
        N::CreateUserMappingStmt(_) => "CREATE USER MAPPING".into(),
        N::AlterUserMappingStmt(_) => "ALTER USER MAPPING".into(),
        N::DropUserMappingStmt(_) => "DROP USER MAPPING".into(),
        N::ImportForeignSchemaStmt(_) => "IMPORT FOREIGN SCHEMA".into(),
        N::CreatePlangStmt(_) => "CREATE LANGUAGE".into(),
        N::CreateConversionStmt(_) => "CREATE CONVERSION".into(),
        N::CreateCastStmt(_) => "CREATE CAST".into(),
        N::CreateOpClassStmt(_) => "CREATE OPERATOR CLASS".into(),
        N::CreateOpFamilyStmt(_) => "CREATE OPERATOR FAMILY".into(),
        N::AlterOpFamilyStmt(_) => "ALTER OPERATOR FAMILY".into(),
        N::AlterOperatorStmt(_) => "ALTER OPERATOR".into(),
        N::AlterTsdictionaryStmt(_) => "ALTER TEXT SEARCH DICTIONARY".into(),
        N::AlterTsconfigurationStmt(_) => "ALTER TEXT SEARCH CONFIGURATION".into(),
        N::CreateTransformStmt(_) => "CREATE TRANSFORM".into(),
        N::CreateAmStmt(_) => "CREATE ACCESS METHOD".into(),
        N::CreatePublicationStmt(_) => "CREATE PUBLICATION".into(),
        N::AlterPublicationStmt(_) => "ALTER PUBLICATION".into(),
        N::CreateSubscriptionStmt(_) => "CREATE SUBSCRIPTION".into(),
        N::AlterSubscriptionStmt(_) => "ALTER SUBSCRIPTION".into(),
        N::DropSubscriptionStmt(_) => "DROP SUBSCRIPTION".into(),
        N::CreateStatsStmt(_) => "CREATE STATISTICS".into(),
        N::AlterStatsStmt(_) => "ALTER STATISTICS".into(),
        N::AlterCollationStmt(_) => "ALTER COLLATION".into(),
        N::SecLabelStmt(s) => {
            let mut b = base(Ddl, "SECURITY LABEL");
            b.named.extend(named_relation(s.objtype, s.object.as_deref()));
            return b;
        }
        N::CommentStmt(c) => {
            let mut b = base(Ddl, "COMMENT");
            b.named.extend(named_relation(c.objtype, c.object.as_deref()));
            return b;
        }
        N::DropStmt(d) => {
            let mut b = base(Ddl, format!("DROP {}", object(d.remove_type)));
            b.named = d
                .objects
                .iter()
                .filter_map(|o| named_relation(d.remove_type, Some(o)))
                .collect();
            return b;
        }
        N::AlterTableStmt(a) => {
            let mut b = base(Ddl, alter(a.objtype));
            b.no_tables = names::is_type(a.objtype, O::ObjectType);
            return b;
        }
        N::RenameStmt(r) => {
            // Renaming a column or constraint alters its table.
            let on_rel = names::is_on_relation(r.rename_type) || names::is_type(r.rename_type, O::ObjectAttribute);
            let mut b = base(Ddl, alter(if on_rel { r.relation_type } else { r.rename_type }));
            b.no_tables = names::is_type(r.rename_type, O::ObjectAttribute);
            return b;
        }
        N::AlterObjectSchemaStmt(a) => alter(a.object_type).into(),
        N::AlterOwnerStmt(a) => alter(a.object_type).into(),
        N::AlterObjectDependsStmt(a) => alter(a.object_type).into(),
        _ => return base(Unknown, "UNKNOWN"),
    };
    base(Ddl, command)
}
