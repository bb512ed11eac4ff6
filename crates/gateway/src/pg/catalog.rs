//! The target's relations as its catalog has them, so a statement that
//! names a view is judged and recorded by the tables under it.
//!
//! A rule on `customers` must hold for `UPDATE customers_view`, and an
//! auditor's `--table customers` must find it. The gateway reads every
//! relation and every view's base tables from the catalog (one query on a
//! connection of its own, cached per connection for [`FRESH_FOR`]), names
//! each relation a statement names by its catalog identity (`schema.name`:
//! a three-part name naming the session's database loses its first part,
//! one naming another is refused as PostgreSQL refuses it; a bare name is
//! every schema's relation of that name), and widens the statement's
//! tables with the base tables of the views it names. A relation the statement names that the catalog does not hold
//! makes the session read the catalog again first (a name a read just missed
//! is not looked for again within [`RELOAD_AT_MOST_EVERY`]); one created by
//! DDL through this session is taken from that DDL at once (see
//! [`Relations::learn`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use taskgate_sqlclass::{Class, Classification};

use super::own_query;
use super::upstream::{self, UpstreamError};

/// How long a catalog read serves new sessions of the same connection.
pub const FRESH_FOR: Duration = Duration::from_secs(30);
/// A name a read did not find is taken as not there for this long; asked
/// for after it, the catalog is read again.
pub const RELOAD_AT_MOST_EVERY: Duration = Duration::from_secs(2);

/// Every relation (by the classifier's rendering: `schema.name`), each
/// view's direct dependencies, the relations the rules on tables touch, and
/// the user triggers on tables, in one round trip.
const QUERY: &str = "SELECT n.nspname, c.relname, c.relkind::text FROM pg_catalog.pg_class c \
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast'); \
SELECT DISTINCT vn.nspname, v.relname, bn.nspname, b.relname FROM pg_catalog.pg_rewrite r \
JOIN pg_catalog.pg_class v ON v.oid = r.ev_class AND v.relkind IN ('v', 'm') \
JOIN pg_catalog.pg_namespace vn ON vn.oid = v.relnamespace \
JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid \
AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid <> v.oid \
JOIN pg_catalog.pg_class b ON b.oid = d.refobjid \
JOIN pg_catalog.pg_namespace bn ON bn.oid = b.relnamespace \
WHERE vn.nspname NOT IN ('pg_catalog', 'information_schema'); \
SELECT DISTINCT tn.nspname, t.relname, bn.nspname, b.relname FROM pg_catalog.pg_rewrite r \
JOIN pg_catalog.pg_class t ON t.oid = r.ev_class AND t.relkind IN ('r', 'p', 'f') \
JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace \
JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid \
AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid <> t.oid \
JOIN pg_catalog.pg_class b ON b.oid = d.refobjid \
JOIN pg_catalog.pg_namespace bn ON bn.oid = b.relnamespace \
WHERE tn.nspname NOT IN ('pg_catalog', 'information_schema'); \
SELECT n.nspname, c.relname, t.tgname FROM pg_catalog.pg_trigger t \
JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid \
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
WHERE NOT t.tgisinternal AND n.nspname NOT IN ('pg_catalog', 'information_schema')";

/// A relation name as the classifier renders it (see sqlclass's
/// `render_name`): a part holding `.` or `"` is quoted.
fn render(schema: &str, name: &str) -> String {
    taskgate_sqlclass::render_name([schema, name])
}

/// A statement names a relation in another database: PostgreSQL refuses
/// it, and so does the gateway, before it reaches the server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{CROSS_DATABASE}: {0}")]
pub struct CrossDatabase(pub String);

/// How PostgreSQL words its refusal of another database's name.
pub const CROSS_DATABASE: &str = "cross-database references are not implemented";

/// The relations of one target.
#[derive(Clone, Debug)]
pub struct Relations {
    /// Qualified names by bare name.
    by_name: HashMap<String, Vec<String>>,
    /// A view's (or anything DDL made stand for other tables) base tables,
    /// qualified, resolved through views below it.
    base: HashMap<String, Vec<String>>,
    /// The connection's catalog generation this was read at (see
    /// [`Catalogs::generation_of`]).
    generation: u64,
    /// When the catalog was read: a session judges by it for
    /// [`FRESH_FOR`] at most (DDL made around the gateway on a target
    /// without the catalog trigger is seen then).
    read_at: Instant,
    /// Relations the rules on a table touch when it is written (`CREATE
    /// RULE r AS ON INSERT TO orders DO ALSO UPDATE customers ...`).
    rule_tables: HashMap<String, Vec<String>>,
    /// The user triggers on a table: code that runs when it is written.
    triggers: HashMap<String, Vec<String>>,
}

/// What one catalog read returns, row by row.
#[derive(Default)]
struct Rows {
    relations: Vec<[String; 3]>,
    view_deps: Vec<[String; 4]>,
    rule_deps: Vec<[String; 4]>,
    triggers: Vec<[String; 3]>,
}

impl Relations {
    fn from_rows(rows: Rows) -> Relations {
        let Rows {
            relations,
            view_deps: deps,
            rule_deps,
            triggers: trigger_rows,
        } = rows;
        let mut rule_tables: HashMap<String, Vec<String>> = HashMap::new();
        for [ts, tn, bs, bn] in &rule_deps {
            rule_tables
                .entry(render(ts, tn))
                .or_default()
                .push(render(bs, bn));
        }
        let mut triggers: HashMap<String, Vec<String>> = HashMap::new();
        for [schema, table, trigger] in &trigger_rows {
            triggers
                .entry(render(schema, table))
                .or_default()
                .push(trigger.clone());
        }
        let mut by_name: HashMap<String, Vec<String>> = HashMap::new();
        for [schema, name, _kind] in &relations {
            by_name
                .entry(name.clone())
                .or_default()
                .push(render(schema, name));
        }
        let mut direct: HashMap<String, Vec<String>> = HashMap::new();
        for [vs, vn, bs, bn] in &deps {
            direct
                .entry(render(vs, vn))
                .or_default()
                .push(render(bs, bn));
        }
        let mut base = HashMap::new();
        for view in direct.keys() {
            let mut seen = HashSet::new();
            let mut out = Vec::new();
            flatten(view, &direct, &mut seen, &mut out);
            out.sort();
            out.dedup();
            base.insert(view.clone(), out);
        }
        Relations {
            by_name,
            base,
            generation: 0,
            read_at: Instant::now(),
            rule_tables,
            triggers,
        }
    }

    /// The qualified relations a name as written may be: `s.t` that one,
    /// `t` any schema's `t` (the session's `search_path` decides which),
    /// `db.s.t` as `s.t` (the caller has checked `db`).
    fn candidates<'a>(&'a self, written: &'a str) -> Vec<&'a str> {
        let parts = taskgate_sqlclass::name_parts(written);
        let (schema, bare) = match parts.as_slice() {
            [.., schema, bare] => (Some(schema.as_str()), bare.as_str()),
            [bare] => (None, bare.as_str()),
            [] => return Vec::new(),
        };
        let mut found: Vec<&str> = self
            .by_name
            .get(bare)
            .into_iter()
            .flatten()
            .map(String::as_str)
            .filter(|q| {
                schema.is_none_or(|s| {
                    taskgate_sqlclass::name_parts(q).first().map(String::as_str) == Some(s)
                })
            })
            .collect();
        // Names DDL of this session made stand for other tables.
        if let Some((known, _)) = self.base.get_key_value(written)
            && !found.contains(&known.as_str())
        {
            found.push(known);
        }
        found
    }

    /// Names the statement uses that the catalog does not hold.
    pub fn unknown<'a>(&self, c: &'a Classification) -> Vec<&'a str> {
        c.tables_read
            .iter()
            .chain(&c.tables_written)
            .map(String::as_str)
            .filter(|t| self.candidates(t).is_empty())
            .collect()
    }

    /// The classification with every relation by its catalog identity: a
    /// three-part name naming `database` as `schema.name` (naming another
    /// database, refused), a bare name as every `schema.name` the catalog
    /// has under it (a name it lacks stays as written), and the base tables
    /// of every view added (written where the view is written).
    pub fn resolve(
        &self,
        c: &Classification,
        database: &str,
    ) -> Result<Classification, CrossDatabase> {
        let mut wide = c.clone();
        for tables in [&mut wide.tables_read, &mut wide.tables_written] {
            let mut out = Vec::with_capacity(tables.len());
            for t in tables.iter() {
                let parts = taskgate_sqlclass::name_parts(t);
                let name = match parts.as_slice() {
                    [db, schema, bare] if db == database => render(schema, bare),
                    [_, _, _] => return Err(CrossDatabase(t.clone())),
                    _ => t.clone(),
                };
                let found = self.candidates(&name);
                if found.is_empty() {
                    out.push(name);
                    continue;
                }
                for q in found {
                    out.push(q.to_owned());
                    if let Some(base) = self.base.get(q) {
                        out.extend(base.iter().cloned());
                    }
                }
            }
            out.sort();
            out.dedup();
            *tables = out;
        }
        // Code that runs when a table is written: a rule's tables are
        // written with it (strict: a rule's reads count as writes), a user
        // trigger is code the gateway cannot see into.
        let mut also = Vec::new();
        for t in &wide.tables_written {
            also.extend(self.rule_tables.get(t).into_iter().flatten().cloned());
            for trigger in self.triggers.get(t).into_iter().flatten() {
                wide.opaque
                    .push(format!("{TRIGGER_PREFIX}{trigger} on {t}"));
            }
        }
        if !also.is_empty() || !wide.opaque.is_empty() {
            wide.tables_written.extend(also);
            for v in [&mut wide.tables_written, &mut wide.opaque] {
                v.sort();
                v.dedup();
            }
        }
        Ok(wide)
    }

    /// DDL run through this session that writes a relation while reading
    /// others (`CREATE VIEW v AS SELECT ... FROM customers`, a rule, `CREATE
    /// TABLE ... AS`): from now on that name stands for those tables too,
    /// before the catalog is read again.
    pub fn learn(&mut self, c: &Classification) {
        if c.class != Class::Ddl || c.tables_read.is_empty() {
            return;
        }
        for target in &c.tables_written {
            let sources: Vec<String> = c
                .tables_read
                .iter()
                .filter(|t| *t != target)
                .flat_map(|t| {
                    let resolved: Vec<String> = self
                        .candidates(t)
                        .into_iter()
                        .flat_map(|q| {
                            self.base
                                .get(q)
                                .cloned()
                                .unwrap_or_else(|| vec![q.to_owned()])
                        })
                        .collect();
                    if resolved.is_empty() {
                        vec![t.clone()]
                    } else {
                        resolved
                    }
                })
                .collect();
            let base = self.base.entry(target.clone()).or_default();
            base.extend(sources);
            base.sort();
            base.dedup();
        }
    }
}

fn flatten(
    view: &str,
    direct: &HashMap<String, Vec<String>>,
    seen: &mut HashSet<String>,
    out: &mut Vec<String>,
) {
    if !seen.insert(view.to_owned()) {
        return;
    }
    for dep in direct.get(view).into_iter().flatten() {
        if direct.contains_key(dep) {
            flatten(dep, direct, seen, out);
        } else {
            out.push(dep.clone());
        }
    }
}

/// Why the catalog could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Login(#[from] UpstreamError),
    #[error("reading the catalog failed: {0}")]
    Query(String),
}

/// The application name of the gateway's catalog connections, so the
/// database's log tells them from sessions (`taskgate/<task id>`).
const APPLICATION_NAME: &str = "taskgate/catalog";

/// How a session's catalog is read: as the session logs in, on a
/// connection of the gateway's own.
#[derive(Clone)]
pub struct Access {
    pub connection: String,
    pub address: String,
    /// The database sessions log in to: a three-part name must name it.
    pub database: String,
    params: Vec<(String, String)>,
    password: Option<taskgate_policy::Secret>,
    pub timeout: Duration,
}

impl Access {
    /// From a session's startup parameters (its application name is
    /// replaced).
    pub fn new(
        connection: &str,
        address: &str,
        params: &[(&str, &str)],
        password: Option<taskgate_policy::Secret>,
        timeout: Duration,
    ) -> Access {
        let database = params
            .iter()
            .find(|(k, _)| *k == "database")
            .map(|(_, v)| (*v).to_owned())
            .unwrap_or_default();
        let params = params
            .iter()
            .map(|(k, v)| {
                let v = if *k == "application_name" {
                    APPLICATION_NAME
                } else {
                    v
                };
                ((*k).to_owned(), v.to_owned())
            })
            .collect();
        Access {
            connection: connection.to_owned(),
            address: address.to_owned(),
            database,
            params,
            password,
            timeout,
        }
    }

    /// The relations, from the shared cache unless `fresh`.
    pub async fn relations(
        &self,
        ctx: &super::PgContext,
        fresh: bool,
    ) -> Result<Arc<Relations>, CatalogError> {
        let params: Vec<(&str, &str)> = self
            .params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let target = Target {
            address: &self.address,
            tls: ctx.upstream_tls.get(&self.connection),
            params: &params,
            password: self.password.as_ref(),
            timeout: self.timeout,
        };
        ctx.catalogs
            .relations(&self.connection, &target, fresh)
            .await
    }
}

/// One session's view of its target's relations: the shared catalog read,
/// what DDL of this session added, and when it was last read.
pub struct SessionCatalog {
    ctx: Arc<super::PgContext>,
    access: Access,
    relations: Arc<Relations>,
    /// Names a read made for them did not find, and when: asked for again
    /// within [`RELOAD_AT_MOST_EVERY`], they are taken as not there.
    missing: HashMap<String, Instant>,
    /// Names the next read is for.
    wanted: Vec<String>,
    /// Whether the next read must bypass the shared read (DDL settled, or
    /// a name is missing from it); one that has only aged takes the
    /// shared read when that is newer.
    bypass_shared: bool,
    /// The connection's catalog generation (see [`Catalogs::invalidate`]).
    generation: Arc<AtomicU64>,
    /// Resolutions of the classifier's cached classifications, by the
    /// address of the one resolved (kept alive beside it, so the address
    /// is not reused): a repeated statement is resolved once per catalog
    /// read, not per message. Behind a lock only so `&self` methods can
    /// fill it; only this session takes it.
    resolved: Mutex<HashMap<usize, Resolved>>,
}

/// A classification and its resolution.
type Resolved = (Arc<Classification>, Arc<Classification>);

/// Resolutions a session keeps before it starts again.
const RESOLVED_CACHED: usize = 1024;

impl SessionCatalog {
    pub fn new(ctx: Arc<super::PgContext>, access: Access, relations: Arc<Relations>) -> Self {
        let generation = ctx.catalogs.generation_of(&access.connection);
        Self {
            ctx,
            access,
            relations,
            missing: HashMap::new(),
            wanted: Vec::new(),
            bypass_shared: true,
            generation,
            resolved: Mutex::default(),
        }
    }

    /// The classification with its relations by catalog identity (see
    /// [`Relations::resolve`]). A name in another database makes it text
    /// the server refuses: its `error` says so, and it never runs.
    pub fn resolve(&self, c: Arc<Classification>) -> Arc<Classification> {
        if c.tables_read.is_empty() && c.tables_written.is_empty() {
            return c;
        }
        let key = Arc::as_ptr(&c) as usize;
        let mut cache = self.resolved.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, resolved)) = cache.get(&key) {
            return Arc::clone(resolved);
        }
        let resolved = match self.relations.resolve(&c, &self.access.database) {
            Ok(resolved) if resolved == *c => Arc::clone(&c),
            Ok(resolved) => Arc::new(resolved),
            Err(e) => Arc::new(Classification {
                error: Some(e.to_string()),
                ..(*c).clone()
            }),
        };
        if cache.len() >= RESOLVED_CACHED {
            cache.clear();
        }
        cache.insert(key, (c, Arc::clone(&resolved)));
        resolved
    }

    /// The relations changed: every resolution is stale.
    fn relations_changed(&mut self) {
        self.resolved
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Whether the statement names relations the catalog read does not
    /// hold that no recent read looked for: then the catalog is read again
    /// before the statement is decided (a view made since the last read
    /// must not pass as an unknown name). Remembers what to look for.
    pub fn should_read_for(&mut self, c: &Classification) -> bool {
        if c.error.is_some() || (c.tables_read.is_empty() && c.tables_written.is_empty()) {
            return false;
        }
        // DDL settled on some session of this connection since the read:
        // every name may stand for something else now.
        if self.relations.generation != self.generation.load(Ordering::Acquire) {
            self.missing.clear();
            self.bypass_shared = true;
            return true;
        }
        // Read long enough ago that DDL made around the gateway may have
        // changed what a name it holds stands for.
        if self.relations.read_at.elapsed() >= FRESH_FOR {
            self.bypass_shared = false;
            return true;
        }
        let fresh = |at: &Instant| at.elapsed() < RELOAD_AT_MOST_EVERY;
        let wanted: Vec<String> = self
            .relations
            .unknown(c)
            .into_iter()
            .filter(|n| !self.missing.get(*n).is_some_and(fresh))
            .map(str::to_owned)
            .collect();
        if wanted.is_empty() {
            return false;
        }
        self.wanted.extend(wanted);
        self.bypass_shared = true;
        true
    }

    /// Reads the catalog again. A failure keeps what was read before
    /// (statements naming what it lacks are judged by their names).
    pub async fn read_again(&mut self) {
        match self.access.relations(&self.ctx, self.bypass_shared).await {
            Ok(relations) => {
                self.relations = relations;
                self.relations_changed();
            }
            Err(e) => {
                tracing::warn!(connection = %self.access.connection, error = %e, "cannot read the target's catalog again");
                // Judged by what was read before, and not read again for
                // every statement until the next DDL settles or it ages.
                let relations = Arc::make_mut(&mut self.relations);
                relations.generation = self.generation.load(Ordering::Acquire);
                relations.read_at = Instant::now();
            }
        }
        let now = Instant::now();
        // Bounded: names not asked for lately are dropped.
        self.missing
            .retain(|_, at| now.duration_since(*at) < RELOAD_AT_MOST_EVERY);
        for name in self.wanted.drain(..) {
            self.missing.insert(name, now);
        }
    }

    /// DDL forwarded through this session: learn what it makes names
    /// stand for at once. Whether the catalog may have changed (DDL, or
    /// code the gateway cannot see into) is returned: once the
    /// transaction ends, every session's view must be read again (see
    /// [`Catalogs::invalidate`]).
    pub fn ran(&mut self, c: &Classification) -> bool {
        if c.class == Class::Ddl {
            Arc::make_mut(&mut self.relations).learn(c);
            self.relations_changed();
        }
        changes_catalog(c)
    }
}

/// Whether running `c` may change the relations the catalog holds.
pub fn changes_catalog(c: &Classification) -> bool {
    // A user trigger could run DDL too, but counting every write to a
    // table with a trigger would make every session read the catalog
    // again after each: such DDL is treated as made around the gateway.
    c.class == Class::Ddl
        || c.class == Class::Unknown
        || c.opaque.iter().any(|o| !o.starts_with(TRIGGER_PREFIX))
}

/// How a user trigger is named in `Classification::opaque`.
const TRIGGER_PREFIX: &str = "trigger ";

/// How to reach one target as a session would.
pub struct Target<'a> {
    pub address: &'a str,
    pub tls: Option<&'a super::tls::Upstream>,
    pub params: &'a [(&'a str, &'a str)],
    pub password: Option<&'a taskgate_policy::Secret>,
    pub timeout: Duration,
}

/// Reads the relations of a target on a connection of its own.
pub async fn load(target: &Target<'_>) -> Result<Relations, CatalogError> {
    let mut up = upstream::connect(
        target.address,
        target.tls,
        target.params,
        target.password,
        target.timeout,
    )
    .await?;
    let answer = tokio::time::timeout(target.timeout, own_query::simple_query(&mut up, QUERY))
        .await
        .map_err(|_| CatalogError::Query("timed out".into()))?
        .map_err(|e| CatalogError::Query(e.0))?;
    own_query::terminate(&mut up).await;
    let [relations, view_deps, rule_deps, triggers] =
        <[Vec<Vec<String>>; 4]>::try_from(answer.results)
            .map_err(|_| CatalogError::Query("expected four result sets".into()))?;
    fn rows<const N: usize>(rows: Vec<Vec<String>>) -> Vec<[String; N]> {
        rows.into_iter()
            .filter_map(|r| <[String; N]>::try_from(r).ok())
            .collect()
    }
    Ok(Relations::from_rows(Rows {
        relations: rows(relations),
        view_deps: rows(view_deps),
        rule_deps: rows(rule_deps),
        triggers: rows(triggers),
    }))
}

/// Catalog reads shared by the sessions of each connection.
#[derive(Default)]
pub struct Catalogs {
    cached: Mutex<HashMap<String, (Instant, Arc<Relations>)>>,
    /// Per connection, bumped each time DDL through the gateway settles:
    /// a read from an older generation is stale for every session.
    generations: Mutex<HashMap<String, Arc<AtomicU64>>>,
}

impl Catalogs {
    /// The relations of `connection`, read again when older than
    /// [`FRESH_FOR`] or when `fresh` asks for it.
    pub async fn relations(
        &self,
        connection: &str,
        target: &Target<'_>,
        fresh: bool,
    ) -> Result<Arc<Relations>, CatalogError> {
        let generation = self.generation_of(connection).load(Ordering::Acquire);
        if !fresh {
            let cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, relations)) = cached.get(connection)
                && at.elapsed() < FRESH_FOR
                && relations.generation == generation
            {
                return Ok(Arc::clone(relations));
            }
        }
        // Tagged with the generation from before the read: DDL settling
        // while it runs makes it stale at once.
        let mut loaded = load(target).await?;
        loaded.generation = generation;
        let relations = Arc::new(loaded);
        self.cached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                connection.to_owned(),
                (Instant::now(), Arc::clone(&relations)),
            );
        Ok(relations)
    }

    /// The connection's catalog generation, which sessions read without
    /// taking a lock.
    pub fn generation_of(&self, connection: &str) -> Arc<AtomicU64> {
        Arc::clone(
            self.generations
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(connection.to_owned())
                .or_default(),
        )
    }

    /// DDL on the connection settled (its transaction ended): every
    /// session reads the catalog again before its next statement that
    /// names a relation.
    pub fn invalidate(&self, connection: &str) {
        self.generation_of(connection)
            .fetch_add(1, Ordering::AcqRel);
        self.cached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(connection);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> String {
        v.to_owned()
    }

    fn relations() -> Relations {
        Relations::from_rows(Rows {
            relations: vec![
                [s("public"), s("customers"), s("r")],
                [s("public"), s("orders"), s("r")],
                [s("public"), s("cust_v"), s("v")],
                [s("public"), s("cust_vv"), s("v")],
                [s("s2"), s("orders"), s("r")],
                [s("public"), s("audited"), s("r")],
            ],
            view_deps: vec![
                [s("public"), s("cust_v"), s("public"), s("customers")],
                [s("public"), s("cust_vv"), s("public"), s("cust_v")],
                [s("public"), s("cust_vv"), s("public"), s("orders")],
            ],
            rule_deps: vec![[s("s2"), s("orders"), s("public"), s("customers")]],
            triggers: vec![[s("public"), s("audited"), s("stamp")]],
        })
    }

    fn resolve(r: &Relations, sql: &str) -> Classification {
        r.resolve(&taskgate_sqlclass::classify(sql), "shop")
            .expect("this database")
    }

    #[test]
    fn a_view_stands_for_its_base_tables_through_other_views() {
        let r = relations();
        assert_eq!(
            resolve(&r, "UPDATE cust_vv SET name = 'x'").tables_written,
            ["public.cust_vv", "public.customers", "public.orders"]
        );
        assert_eq!(
            resolve(&r, "SELECT * FROM public.cust_v").tables_read,
            ["public.cust_v", "public.customers"]
        );
        // A bare name in two schemas is both (the search_path decides).
        assert_eq!(
            resolve(&r, "SELECT * FROM orders").tables_read,
            ["public.orders", "s2.orders"]
        );
        assert_eq!(
            resolve(&r, "SELECT * FROM s2.cust_v").tables_read,
            ["s2.cust_v"]
        );
    }

    #[test]
    fn three_part_names_are_this_database_or_refused() {
        let r = relations();
        for sql in [
            "DELETE FROM shop.public.orders WHERE id = 3",
            "DELETE FROM \"shop\".\"public\".\"orders\" WHERE id = 3",
            "DELETE FROM ONLY shop.public.orders",
        ] {
            assert_eq!(resolve(&r, sql).tables_written, ["public.orders"], "{sql}");
        }
        let other = taskgate_sqlclass::classify("DELETE FROM other.public.orders");
        assert_eq!(
            r.resolve(&other, "shop"),
            Err(CrossDatabase("other.public.orders".into()))
        );
        // Case matters in a quoted database name, as to PostgreSQL.
        let quoted = taskgate_sqlclass::classify("SELECT * FROM \"Shop\".public.orders");
        assert!(r.resolve(&quoted, "shop").is_err());
    }

    #[test]
    fn names_not_in_the_catalog_are_unknown_until_ddl_here_makes_them() {
        let mut r = relations();
        let create = resolve(&r, "CREATE VIEW v2 AS SELECT * FROM cust_v");
        assert_eq!(r.unknown(&create), ["v2"]);
        r.learn(&create);
        let update = taskgate_sqlclass::classify("UPDATE v2 SET name = 'x'");
        assert!(r.unknown(&update).is_empty());
        assert_eq!(
            resolve(&r, "UPDATE v2 SET name = 'x'").tables_written,
            ["public.customers", "v2"]
        );
    }

    #[test]
    fn rules_and_triggers_on_a_written_table_are_in_sight() {
        let r = relations();
        let insert = resolve(&r, "INSERT INTO s2.orders VALUES (1)");
        assert_eq!(insert.tables_written, ["public.customers", "s2.orders"]);
        assert!(insert.opaque.is_empty());
        let update = resolve(&r, "UPDATE audited SET x = 1");
        assert_eq!(update.opaque, ["trigger stamp on public.audited"]);
        // Reads run neither.
        let read = resolve(&r, "SELECT * FROM audited, s2.orders");
        assert!(read.opaque.is_empty() && read.tables_written.is_empty());
    }
}
