//! The configuration's shape. Every struct refuses unknown fields.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use taskgate_sqlclass::Class;

use super::Located;
use crate::{Access, HumanDuration, IdentityKind, Matcher, SecretRef};

pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_POSTGRES_LISTEN: &str = "127.0.0.1:15432";
/// How long a pending request waits for a decision unless a policy says otherwise.
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(60 * 60);

#[derive(Clone, Debug, Default)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub audit: AuditConfig,
    pub identity: IdentityConfig,
    pub roles: Roles,
    pub mcp: McpConfig,
    pub console: ConsoleConfig,
    pub connections: Vec<Located<Connection>>,
    pub policies: Vec<Located<Policy>>,
    pub sinks: Vec<Located<Sink>>,
}

impl Config {
    /// Every secret the config names, with where it is named: what
    /// `config check` resolves, as `serve` will.
    pub fn secret_refs(&self) -> Vec<(String, SecretRef)> {
        let mut refs = Vec::new();
        if let Some(r) = self.store.password_ref() {
            refs.push(("[store] password".to_owned(), r));
        }
        for dev in self.identity.dev.iter().map(|d| &d.value) {
            if let Some(r) = dev.token_ref() {
                refs.push((format!("dev identity {}: token", dev.subject), r));
            }
        }
        for c in self.connections.iter().map(|c| &c.value) {
            for access in [Access::Read, Access::Write, Access::Admin] {
                if let Some(r) = c.credential(access).and_then(Credential::password_ref) {
                    refs.push((format!("connection {}: {access} password", c.name), r));
                }
            }
        }
        for sink in self.sinks.iter().map(|s| &s.value) {
            if let Some(r) = sink.secret_ref() {
                refs.push((format!("sink {}: secret", sink.name), r));
            }
        }
        refs
    }

    /// Makes every relative file path (store, token and password files)
    /// relative to `base`, the config file's directory, so a config means
    /// the same wherever the gateway is started from.
    pub fn resolve_paths(&mut self, base: &std::path::Path) {
        let fix = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        };
        fix(&mut self.store.path);
        if let Some(path) = self.store.password_file.as_mut() {
            fix(path);
        }
        if let Some(path) = self.store.tls.as_mut().and_then(|t| t.ca_file.as_mut()) {
            fix(path);
        }
        fix(&mut self.audit.signing_key);
        fix(&mut self.audit.checkpoint_dir);
        for path in [
            &mut self.server.tls_cert,
            &mut self.server.tls_key,
            &mut self.server.api_tls_cert,
            &mut self.server.api_tls_key,
        ]
        .into_iter()
        .flatten()
        {
            fix(path);
        }
        for dev in &mut self.identity.dev {
            if let Some(path) = dev.value.token_file.as_mut() {
                fix(path);
            }
        }
        for conn in &mut self.connections {
            let c = &mut conn.value;
            if let Some(path) = c.tls.as_mut().and_then(|t| t.ca_file.as_mut()) {
                fix(path);
            }
            for cred in [&mut c.read, &mut c.write, &mut c.admin]
                .into_iter()
                .flatten()
            {
                if let Some(path) = cred.password_file.as_mut() {
                    fix(path);
                }
            }
        }
    }

    pub fn connection(&self, name: &str) -> Option<&Connection> {
        self.connections
            .iter()
            .map(|c| &c.value)
            .find(|c| c.name == name)
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "default_api_listen")]
    pub api_listen: SocketAddr,
    #[serde(default = "default_postgres_listen")]
    pub postgres_listen: SocketAddr,
    /// Data-plane connections open at once, over all tasks.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Data-plane connections open at once for one task.
    #[serde(default = "default_max_connections_per_task")]
    pub max_connections_per_task: usize,
    /// Pending and active tasks one identity may have at once.
    #[serde(default = "default_max_open_tasks_per_identity")]
    pub max_open_tasks_per_identity: usize,
    /// Statements of one identity's tasks that may wait for a review at
    /// once, over all its tasks and sessions.
    #[serde(default = "default_max_held_statements_per_identity")]
    pub max_held_statements_per_identity: usize,
    /// Largest client message carrying SQL, parameters or COPY data.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// How long a client may take from connecting to finishing its login.
    #[serde(default = "default_startup_timeout")]
    pub startup_timeout: HumanDuration,
    /// How long a statement held for review waits for a decision before it
    /// is refused.
    #[serde(default = "default_review_hold")]
    pub review_hold: HumanDuration,
    /// PEM certificate chain and key for TLS on the PostgreSQL listener.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Refuse clients that do not switch to TLS.
    #[serde(default)]
    pub require_tls: bool,
    /// PEM certificate chain and key for HTTPS on the API listener (they may
    /// be the same files as `tls_cert` and `tls_key`).
    pub api_tls_cert: Option<PathBuf>,
    pub api_tls_key: Option<PathBuf>,
    /// Serve a listener that is not on loopback without TLS: bearer tokens
    /// and task tokens then cross the network in clear.
    #[serde(default)]
    pub allow_plaintext: bool,
    /// This gateway's name in a fleet: in every event it records and in
    /// `/healthz`. The host name when absent.
    pub node: Option<String>,
}

pub const DEFAULT_MAX_CONNECTIONS: usize = 2_000;
pub const DEFAULT_MAX_CONNECTIONS_PER_TASK: usize = 50;
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
pub const DEFAULT_MAX_OPEN_TASKS_PER_IDENTITY: usize = 25;
pub const DEFAULT_MAX_HELD_STATEMENTS_PER_IDENTITY: usize = 20;
/// Defaults that keep an agent's mistake small; each connection may set its own.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(15 * 60);
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}

fn default_startup_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(15))
}

fn default_review_hold() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(300))
}

fn default_max_connections_per_task() -> usize {
    DEFAULT_MAX_CONNECTIONS_PER_TASK
}

fn default_max_open_tasks_per_identity() -> usize {
    DEFAULT_MAX_OPEN_TASKS_PER_IDENTITY
}

fn default_max_held_statements_per_identity() -> usize {
    DEFAULT_MAX_HELD_STATEMENTS_PER_IDENTITY
}

fn default_max_message_bytes() -> usize {
    DEFAULT_MAX_MESSAGE_BYTES
}

fn default_api_listen() -> SocketAddr {
    DEFAULT_API_LISTEN
        .parse()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080)))
}

fn default_postgres_listen() -> SocketAddr {
    DEFAULT_POSTGRES_LISTEN
        .parse()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 15432)))
}

impl ServerConfig {
    /// What one identity may have open at once.
    pub fn identity_limits(&self) -> crate::steps::IdentityLimits {
        crate::steps::IdentityLimits {
            open_tasks: self.max_open_tasks_per_identity,
            held_statements: self.max_held_statements_per_identity,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            api_listen: default_api_listen(),
            postgres_listen: default_postgres_listen(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_task: DEFAULT_MAX_CONNECTIONS_PER_TASK,
            max_open_tasks_per_identity: DEFAULT_MAX_OPEN_TASKS_PER_IDENTITY,
            max_held_statements_per_identity: DEFAULT_MAX_HELD_STATEMENTS_PER_IDENTITY,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            startup_timeout: default_startup_timeout(),
            review_hold: default_review_hold(),
            tls_cert: None,
            tls_key: None,
            require_tls: false,
            api_tls_cert: None,
            api_tls_key: None,
            allow_plaintext: false,
            node: None,
        }
    }
}

/// How hard the store works to keep a committed event across power loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreDurability {
    /// Synced to disk before any caller is told it is committed.
    #[default]
    Full,
    /// Survives a crash of the gateway, not of the machine; faster.
    Normal,
}

/// Signed checkpoints of the audit chain (SPEC §6).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The Ed25519 key that signs checkpoints (PKCS#8 PEM), relative to the
    /// config file; generated, readable by the owner only, on first start.
    #[serde(default = "default_signing_key")]
    pub signing_key: PathBuf,
    /// Where a copy of every checkpoint is written, outside the store: what
    /// lets `audit verify` see the newest records being cut off.
    #[serde(default = "default_checkpoint_dir")]
    pub checkpoint_dir: PathBuf,
    /// A checkpoint after this many events...
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// ...or after this long with new events, whichever comes first; and one
    /// at shutdown.
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval: HumanDuration,
}

fn default_signing_key() -> PathBuf {
    PathBuf::from("taskgate-audit.key")
}

fn default_checkpoint_dir() -> PathBuf {
    PathBuf::from("checkpoints")
}

fn default_checkpoint_every() -> u64 {
    10_000
}

fn default_checkpoint_interval() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(60))
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            signing_key: default_signing_key(),
            checkpoint_dir: default_checkpoint_dir(),
            checkpoint_every: default_checkpoint_every(),
            checkpoint_interval: default_checkpoint_interval(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The embedded SQLite store's file, relative to the config file.
    #[serde(default = "default_store_path")]
    pub path: PathBuf,
    /// The SQLite store's durability (`full` when absent); a shared
    /// store's is its own `synchronous_commit`.
    pub durability: Option<StoreDurability>,
    /// A shared PostgreSQL store for a fleet of gateways
    /// (`postgres://user@host:port/db`, no password in it). With it,
    /// `path` holds this node's read mirror of the shared log.
    pub url: Option<String>,
    /// The shared store's password: from the environment or a file.
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    /// TLS to the shared store; absent means plain TCP.
    pub tls: Option<UpstreamTls>,
}

impl StoreConfig {
    pub fn durability(&self) -> StoreDurability {
        self.durability.unwrap_or_default()
    }

    pub fn password_ref(&self) -> Option<SecretRef> {
        secret_ref(&self.password_env, &self.password_file)
    }
}

fn default_store_path() -> PathBuf {
    PathBuf::from("taskgate.db")
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            path: default_store_path(),
            durability: None,
            url: None,
            password_env: None,
            password_file: None,
            tls: None,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct IdentityConfig {
    pub dev: Vec<Located<DevIdentity>>,
    pub oidc: Vec<Located<OidcIssuer>>,
}

/// A static bearer token for one identity: for local use and tests only.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevIdentity {
    pub subject: String,
    pub kind: IdentityKind,
    #[serde(default)]
    pub groups: Vec<String>,
    pub token_env: Option<String>,
    pub token_file: Option<PathBuf>,
    /// Present only to say why inline tokens are refused.
    pub token: Option<toml::Value>,
}

impl DevIdentity {
    pub fn token_ref(&self) -> Option<SecretRef> {
        secret_ref(&self.token_env, &self.token_file)
    }
}

/// An OpenID Connect issuer whose ID or access tokens (JWTs) identify
/// callers: people through a company IdP, agents through GitHub Actions.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcIssuer {
    /// The issuer URL, exactly as tokens' `iss` says it.
    pub issuer: String,
    /// A short name for matchers scoped to this issuer (`group:dba@NAME`).
    pub name: Option<String>,
    /// The `aud` a token must carry: this gateway's name at the IdP.
    pub audience: String,
    /// Whether its identities are agents or people.
    pub kind: IdentityKind,
    /// The claim that names the identity.
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
    /// A claim holding the identity's display name (kept as its `name`).
    pub name_claim: Option<String>,
    /// A claim holding the identity's groups (an array of strings).
    pub groups_claim: Option<String>,
    /// Claims kept with the identity in every event (for GitHub Actions,
    /// repository, workflow, run id, actor... by default).
    pub claims: Option<Vec<String>>,
    /// Rules a token's claims must match, one rule at least (each claim of
    /// a rule matching its pattern, `*` matching any run of characters), as
    /// cloud providers' trust policies do. Required for GitHub Actions.
    #[serde(default)]
    pub trust: Vec<std::collections::BTreeMap<String, String>>,
    /// How often the issuer's keys are fetched again.
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh: HumanDuration,
    /// The least time between two fetches, however many unknown key ids
    /// arrive.
    #[serde(default = "default_jwks_min_refetch")]
    pub jwks_min_refetch: HumanDuration,
    /// Connect and read timeout of every request to the issuer.
    #[serde(default = "default_oidc_timeout")]
    pub timeout: HumanDuration,
    /// Clock difference allowed on `exp` and `nbf`.
    #[serde(default = "default_clock_skew")]
    pub clock_skew: HumanDuration,
}

/// GitHub Actions' token issuer.
pub const GITHUB_ACTIONS_ISSUER: &str = "https://token.actions.githubusercontent.com";

/// GitHub Actions' issuer, or an enterprise's own under it
/// (`https://token.actions.githubusercontent.com/<enterprise>`): the same
/// claims, and the same need for trust rules.
pub fn is_github_actions(issuer: &str) -> bool {
    issuer == GITHUB_ACTIONS_ISSUER
        || issuer
            .strip_prefix(GITHUB_ACTIONS_ISSUER)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Claims of a GitHub Actions token kept with each identity by default.
pub const GITHUB_ACTIONS_CLAIMS: &[&str] = &[
    "repository",
    "repository_id",
    "repository_owner",
    "repository_owner_id",
    "workflow",
    "workflow_ref",
    "job_workflow_ref",
    "ref",
    "environment",
    "event_name",
    "run_id",
    "run_attempt",
    "actor",
    "actor_id",
    "sha",
];

impl OidcIssuer {
    /// The claims kept with each identity.
    pub fn kept_claims(&self) -> Vec<String> {
        match &self.claims {
            Some(claims) => claims.clone(),
            None if is_github_actions(&self.issuer) => GITHUB_ACTIONS_CLAIMS
                .iter()
                .map(|c| c.to_string())
                .collect(),
            None => Vec::new(),
        }
    }
}

fn default_subject_claim() -> String {
    "sub".to_owned()
}

fn default_jwks_refresh() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(3600))
}

fn default_jwks_min_refetch() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30))
}

fn default_oidc_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(5))
}

fn default_clock_skew() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(60))
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roles {
    /// May revoke any task and read the whole trail.
    #[serde(default)]
    pub admins: Vec<Matcher>,
    /// May read the whole trail.
    #[serde(default)]
    pub auditors: Vec<Matcher>,
}

/// The web console at `/ui` on the API listener: who signs in there, and how.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// The `[[identity.oidc]]` issuer people sign in with (its `name` or
    /// URL), by the authorization code flow with PKCE. Without it only dev
    /// identities can sign in, by pasting their token.
    pub issuer: Option<String>,
    /// The console's client id at that issuer (a public client: no secret).
    pub client_id: Option<String>,
    /// Scopes asked for; `openid` is always among them.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The URL browsers reach the gateway at (`https://taskgate.example`),
    /// for the redirect back from the IdP. Default: the API listener's.
    pub public_url: Option<String>,
}

/// The MCP server at `/mcp` on the API listener.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpConfig {
    /// The URL agents reach `/mcp` at (`https://gateway.example/mcp`): the
    /// resource named in the protected-resource metadata, accepted as an
    /// OIDC token audience (RFC 8707), and its host allowed in `Host`.
    /// Default: the API listener's own address.
    pub resource: Option<String>,
    /// More `Host` values to accept besides loopback names and the
    /// resource's host (a load balancer's name, say).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Browser origins allowed to call `/mcp` (`https://app.example:443`);
    /// a request carrying any other `Origin` is refused. Default: none.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionKind {
    Postgres,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    pub name: String,
    pub kind: ConnectionKind,
    /// `host:port` of the target.
    pub address: String,
    pub database: String,
    pub read: Option<Credential>,
    pub write: Option<Credential>,
    pub admin: Option<Credential>,
    /// Longest wait to reach the target and be logged in (default 10s).
    pub connect_timeout: Option<HumanDuration>,
    /// Server-side `statement_timeout` for every session (`0s` turns it off).
    pub statement_timeout: Option<HumanDuration>,
    /// Server-side `lock_timeout` for every session (`0s` turns it off).
    pub lock_timeout: Option<HumanDuration>,
    /// TLS to the target; absent means plain TCP.
    pub tls: Option<UpstreamTls>,
}

/// TLS from the gateway to a target. The certificate is verified (chain
/// and host name) unless `verify = false` says otherwise.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// PEM CA certificates to trust; the system's roots when absent.
    pub ca_file: Option<PathBuf>,
    /// The name to verify; the host part of `address` when absent.
    pub server_name: Option<String>,
    #[serde(default = "default_true")]
    pub verify: bool,
}

fn default_true() -> bool {
    true
}

impl Connection {
    pub fn statement_timeout_ms(&self) -> u128 {
        self.statement_timeout
            .map_or(DEFAULT_STATEMENT_TIMEOUT, |d| d.0)
            .as_millis()
    }

    pub fn lock_timeout_ms(&self) -> u128 {
        self.lock_timeout
            .map_or(DEFAULT_LOCK_TIMEOUT, |d| d.0)
            .as_millis()
    }

    pub fn credential(&self, access: Access) -> Option<&Credential> {
        match access {
            Access::Read => self.read.as_ref(),
            Access::Write => self.write.as_ref(),
            Access::Admin => self.admin.as_ref(),
        }
    }
}

/// The upstream login for one access level. No password means the target
/// trusts the gateway's address.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    pub user: String,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Present only to say why inline passwords are refused.
    pub password: Option<toml::Value>,
}

impl Credential {
    pub fn password_ref(&self) -> Option<SecretRef> {
        secret_ref(&self.password_env, &self.password_file)
    }
}

fn secret_ref(env: &Option<String>, file: &Option<PathBuf>) -> Option<SecretRef> {
    match (env, file) {
        (Some(name), _) => Some(SecretRef::Env(name.clone())),
        (None, Some(path)) => Some(SecretRef::File(path.clone())),
        (None, None) => None,
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Optional label, used in messages.
    pub name: Option<String>,
    pub who: Vec<Matcher>,
    /// Connection names, or `*` for all.
    pub connections: Vec<String>,
    pub access: Vec<Access>,
    pub max_window: HumanDuration,
    pub approve: Option<Approval>,
    #[serde(default)]
    pub statements: Vec<StatementRule>,
}

impl Policy {
    pub fn covers_connection(&self, name: &str) -> bool {
        self.connections.iter().any(|c| c == "*" || c == name)
    }

    /// The approval this policy demands for `access`, if any.
    pub fn approval_for(&self, access: Access) -> Option<&Approval> {
        self.approve.as_ref().filter(|a| a.when.contains(&access))
    }

    /// Everyone this policy names as an approver, of grants at any level
    /// or of statements: the people it trusts to decide about the tasks it
    /// covers, and so to revoke them.
    pub fn named_approvers(&self) -> impl Iterator<Item = &Matcher> {
        self.approve
            .iter()
            .flat_map(|a| &a.by)
            .chain(self.statements.iter().flat_map(|r| &r.by))
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// The access levels that need a human's approval.
    pub when: Vec<Access>,
    pub by: Vec<Matcher>,
    /// How long a request may wait for a decision (default 1h).
    pub timeout: Option<HumanDuration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    Allow,
    Deny,
    Review,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatementRule {
    #[serde(rename = "match")]
    pub matches: StatementMatch,
    pub action: RuleAction,
    #[serde(default)]
    pub by: Vec<Matcher>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatementMatch {
    /// Statement kinds by PostgreSQL's parse tree (`"TRUNCATE"`, `"DROP
    /// TABLE"`, `"DELETE"`), nested ones included: see
    /// `taskgate_sqlclass::command_matches`.
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub class: Vec<Class>,
    #[serde(default)]
    pub tables: Vec<String>,
    pub regex: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    Webhook,
    File,
    Nats,
}

impl SinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::File => "file",
            Self::Nats => "nats",
        }
    }
}

/// An export sink: every event (or those of `types`), in order, at least
/// once, from a durable cursor.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sink {
    /// Names the sink's cursor: renaming a sink starts it over.
    pub name: String,
    pub kind: SinkKind,
    /// `webhook`: where to POST; `nats`: the server.
    pub url: Option<String>,
    /// `file`: the directory of JSON Lines files.
    pub path: Option<PathBuf>,
    /// `nats`: the subject events are published on (default
    /// `taskgate.events`)...
    pub subject: Option<String>,
    /// ...and the JetStream stream that keeps them (default `TASKGATE`;
    /// created with a one-hour duplicate window if missing).
    pub stream: Option<String>,
    /// `webhook`: the signing secret(s), `whsec_...`, several separated by
    /// spaces while rotating.
    pub secret_env: Option<String>,
    pub secret_file: Option<PathBuf>,
    /// Only events of these types (`*` wildcards: `command.*`); all if empty.
    #[serde(default)]
    pub types: Vec<String>,
    /// Events per delivery (a webhook POSTs one event, or an array of up to
    /// this many).
    pub batch: Option<usize>,
    /// Timeout of one delivery.
    #[serde(default = "default_sink_timeout")]
    pub timeout: HumanDuration,
    /// `webhook`: park an event the receiver refuses with a 4xx (other than
    /// 408 and 429) and go on; if false, retry it like a 5xx.
    #[serde(default = "default_true")]
    pub park_rejected: bool,
    /// `file`: start a new file past this size...
    #[serde(default = "default_rotate_bytes")]
    pub rotate_bytes: u64,
    /// ...or this age.
    #[serde(default = "default_rotate_every")]
    pub rotate_every: HumanDuration,
}

impl Sink {
    pub fn secret_ref(&self) -> Option<SecretRef> {
        secret_ref(&self.secret_env, &self.secret_file)
    }
}

fn default_sink_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(10))
}

fn default_rotate_bytes() -> u64 {
    64 * 1024 * 1024
}

fn default_rotate_every() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(3600))
}
