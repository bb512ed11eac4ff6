//! The tools an agent calls. Tasks are requested, shown and ended through
//! the API's own handlers (the same checks, the same records); statements
//! run through the data plane (`run`). Answers are JSON an agent can act
//! on; a refusal by policy is a tool result with `isError`, so the model
//! reads why.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use rmcp::handler::server::common::{Extension, RequestId};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ErrorData, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::{Value, json};
use taskgate_policy::TaskState;

use super::pipe::{Caps, param_text};
use super::run::{self, Collected, HeldStatements, Ran, Statement};
use crate::api::extract::{ApiJson, Caller};
use crate::api::views::{CreateTaskRequest, TaskView};
use crate::api::{ApiError, AppState, tasks};

/// Rows a query returns unless it asks for fewer; and the most it may ask.
const DEFAULT_MAX_ROWS: usize = 100;
const MAX_ROWS: usize = 10_000;
/// Bytes of values one answer carries at most.
const MAX_RESULT_BYTES: usize = 256 * 1024;
/// What a result may hold unless the caller asks for more: about 4,000
/// tokens, within what common clients take from a tool.
const DEFAULT_RESULT_BYTES: usize = 16 * 1024;
/// The longest a wait tool blocks.
const MAX_WAIT_SECONDS: u64 = 300;
const DEFAULT_WAIT_SECONDS: u64 = 60;
/// How often `wait_for_access` looks at the task.
const ACCESS_POLL: Duration = Duration::from_millis(200);

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct RequestAccess {
    /// A short name for the work, like `migrate-orders` (letters, digits, `-`, `_`).
    pub task: String,
    /// Which database, as `list_connections` names it.
    pub connection: String,
    /// `read`, `write` or `admin`.
    pub access: String,
    /// How long access should last once granted, like `15m` or `1h`.
    pub window: String,
    /// Why you need it, in one line; approvers read this.
    pub reason: String,
    /// The issue or pull request this is for (URL or `owner/repo#123`).
    #[serde(rename = "ref")]
    pub reference: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct TaskId {
    /// The task id `request_access` returned (`tsk_...`).
    pub task_id: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct WaitForAccess {
    /// The task id `request_access` returned.
    pub task_id: String,
    /// Seconds to wait, at most 300 (default 60).
    pub timeout_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct Query {
    /// The task id of an active task of yours.
    pub task_id: String,
    /// Exactly one SQL statement. Use $1, $2... for values.
    pub sql: String,
    /// Values for $1, $2... in order.
    pub params: Option<Vec<Value>>,
    /// Most rows to return (default 100, at most 10000; 0 returns none).
    pub max_rows: Option<usize>,
    /// Most bytes of values to return (default 16384, about 4,000 tokens;
    /// at most 262144).
    pub max_bytes: Option<usize>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct WaitForReview {
    /// The review id a `query` answer with status `pending_review` gave.
    pub review_id: String,
    /// Seconds to wait, at most 300 (default 60).
    pub timeout_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct Describe {
    /// The task id of an active task of yours.
    pub task_id: String,
    /// A table (`orders` or `shop.orders`) to show columns and keys of;
    /// leave out to list tables.
    pub table: Option<String>,
}

/// The MCP server: one per request over HTTP, sharing the gateway's state.
#[derive(Clone)]
pub struct Tools {
    state: AppState,
    held: HeldStatements,
    tool_router: ToolRouter<Self>,
}

fn refused(error: &ApiError) -> CallToolResult {
    CallToolResult::structured_error(json!({
        "status": "refused",
        "error": {"code": error.code(), "message": error.message()},
    }))
}

/// The transaction-control command in `sql`, if any: it would change
/// nothing in a call's own autocommitted session (`COMMIT PREPARED` and
/// `ROLLBACK PREPARED` act on a prepared transaction, and are not such).
fn transaction_control(sql: &str) -> Option<String> {
    let c = taskgate_sqlclass::classify(sql);
    // Several statements are refused on the wire path, and recorded there.
    if c.statements > 1 {
        return None;
    }
    c.commands.into_iter().find(|command| {
        matches!(
            command.as_str(),
            "BEGIN"
                | "START TRANSACTION"
                | "COMMIT"
                | "ROLLBACK"
                | "SAVEPOINT"
                | "RELEASE"
                | "ROLLBACK TO SAVEPOINT"
                | "PREPARE TRANSACTION"
        )
    })
}

fn wait_of(seconds: Option<u64>) -> Duration {
    Duration::from_secs(
        seconds
            .unwrap_or(DEFAULT_WAIT_SECONDS)
            .min(MAX_WAIT_SECONDS),
    )
}

/// The authenticated caller the `/mcp` layer put on the request.
fn caller_of(parts: &axum::http::request::Parts) -> Result<Caller, ErrorData> {
    parts
        .extensions
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| ErrorData::invalid_request("the request carries no identity", None))
}

fn peer_of(parts: &axum::http::request::Parts) -> SocketAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)), |c| c.0)
}

fn statement_result(
    outcome: Result<super::pipe::Outcome, super::pipe::PipeError>,
) -> CallToolResult {
    match run::answer_of(outcome) {
        (true, value) => CallToolResult::structured(value),
        (false, value) => CallToolResult::structured_error(value),
    }
}

impl Tools {
    pub fn new(state: AppState, held: HeldStatements) -> Self {
        Self {
            state,
            held,
            tool_router: Self::tool_router(),
        }
    }

    /// The caller's own task, for running statements: another identity's
    /// task is refused even to its approvers and admins.
    async fn own_task(&self, caller: &Caller, id: &str) -> Result<taskgate_policy::Task, ApiError> {
        let task = tasks::load_visible(&self.state, caller, id.to_owned()).await?;
        if !caller.identity.same_principal(&task.requester) {
            return Err(ApiError::forbidden(format!(
                "task {id} belongs to {}: statements run only under your own tasks",
                task.requester.subject
            )));
        }
        Ok(task)
    }

    async fn statements(
        &self,
        parts: &axum::http::request::Parts,
        request_id: &rmcp::model::RequestId,
        task_id: &str,
        statements: Vec<Statement>,
    ) -> Result<CallToolResult, ErrorData> {
        let caller = caller_of(parts)?;
        let task = match self.own_task(&caller, task_id).await {
            Ok(task) => task,
            Err(e) => return Ok(refused(&e)),
        };
        let ran = run::run(
            &self.state,
            &self.held,
            task,
            request_id.to_string(),
            peer_of(parts),
            statements,
        )
        .await;
        Ok(match ran {
            Ran::Done(outcome) => statement_result(outcome),
            Ran::Held { review, approvers } => CallToolResult::structured(json!({
                "status": "pending_review",
                "review_id": review,
                "approvers": approvers,
                "next": "a person must approve this statement; call wait_for_review with this review_id to get its result",
            })),
        })
    }
}

#[tool_router]
impl Tools {
    #[tool(
        description = "List the databases you may ask access to, with the access levels, the longest window, and whether a person must approve."
    )]
    async fn list_connections(
        &self,
        Extension(parts): Extension<axum::http::request::Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        let caller = caller_of(&parts)?;
        let offers: Vec<Value> = taskgate_policy::offers(&self.state.config, &caller.identity)
            .into_iter()
            .map(|o| {
                json!({
                    "connection": o.connection,
                    "access": o.access.as_str(),
                    "max_window": humantime::format_duration(o.max_window).to_string(),
                    "needs_approval": o.approvers.is_some(),
                    "approvers": o.approvers.unwrap_or_default().iter().map(ToString::to_string).collect::<Vec<_>>(),
                })
            })
            .collect();
        Ok(CallToolResult::structured(json!({ "connections": offers })))
    }

    #[tool(
        description = "Ask for access to a database for one named task. Answers status `active` (use the task_id now) or `pending_approval` (call wait_for_access)."
    )]
    async fn request_access(
        &self,
        Extension(parts): Extension<axum::http::request::Parts>,
        Parameters(p): Parameters<RequestAccess>,
    ) -> Result<CallToolResult, ErrorData> {
        let caller = caller_of(&parts)?;
        let body = CreateTaskRequest {
            name: p.task,
            connection: p.connection,
            access: p.access,
            window: p.window,
            reason: Some(p.reason),
            reference: p.reference,
        };
        // The token in the answer is dropped here: statements run through
        // the gateway's own sessions, so the agent never holds one.
        match tasks::create_task(State(self.state.clone()), caller, ApiJson(body)).await {
            Ok((_, Json(created))) => Ok(CallToolResult::structured(task_answer(&created.task))),
            Err(e) => Ok(refused(&e)),
        }
    }

    #[tool(
        description = "Wait until a requested task is approved (status `active`), denied or expired. Answers `timed_out: true` if still pending."
    )]
    async fn wait_for_access(
        &self,
        Extension(parts): Extension<axum::http::request::Parts>,
        Parameters(p): Parameters<WaitForAccess>,
    ) -> Result<CallToolResult, ErrorData> {
        let caller = caller_of(&parts)?;
        let deadline = tokio::time::Instant::now() + wait_of(p.timeout_seconds);
        loop {
            let shown = tasks::get_task(
                State(self.state.clone()),
                caller.clone(),
                Path(p.task_id.clone()),
            )
            .await;
            let view = match shown {
                Ok(Json(view)) => view,
                Err(e) => return Ok(refused(&e)),
            };
            if view.status != TaskState::Pending.as_str() {
                return Ok(CallToolResult::structured(task_answer(&view)));
            }
            if tokio::time::Instant::now() >= deadline {
                let mut answer = task_answer(&view);
                answer["timed_out"] = json!(true);
                return Ok(CallToolResult::structured(answer));
            }
            tokio::time::sleep(ACCESS_POLL).await;
        }
    }

    #[tool(
        description = "Run one SQL statement under your active task, in a session of its own, autocommitted (BEGIN, COMMIT, ROLLBACK are refused). One a person must review answers `pending_review`: call wait_for_review."
    )]
    async fn query(
        &self,
        Extension(parts): Extension<axum::http::request::Parts>,
        RequestId(request_id): RequestId,
        Parameters(p): Parameters<Query>,
    ) -> Result<CallToolResult, ErrorData> {
        if let Some(command) = transaction_control(&p.sql) {
            return Ok(refused(&ApiError::invalid(format!(
                "{command} is refused: each query call runs one statement in a session of its own, committed when it succeeds, so a transaction cannot span calls and {command} would answer ok having done nothing"
            ))));
        }
        let caps = Caps {
            max_rows: p.max_rows.unwrap_or(DEFAULT_MAX_ROWS).min(MAX_ROWS),
            max_bytes: p
                .max_bytes
                .unwrap_or(DEFAULT_RESULT_BYTES)
                .min(MAX_RESULT_BYTES),
        };
        let params = p
            .params
            .unwrap_or_default()
            .iter()
            .map(param_text)
            .collect();
        let statement = Statement {
            sql: p.sql,
            params,
            caps,
        };
        self.statements(&parts, &request_id, &p.task_id, vec![statement])
            .await
    }

    #[tool(
        description = "Wait for a person to decide a statement that `query` held for review; once approved it runs and this returns its result."
    )]
    async fn wait_for_review(
        &self,
        Extension(parts): Extension<axum::http::request::Parts>,
        Parameters(p): Parameters<WaitForReview>,
    ) -> Result<CallToolResult, ErrorData> {
        let caller = caller_of(&parts)?;
        match self
            .held
            .collect(&p.review_id, &caller.identity, wait_of(p.timeout_seconds))
            .await
        {
            Collected::Done(outcome) => Ok(statement_result(outcome)),
            Collected::StillWaiting => Ok(CallToolResult::structured(json!({
                "status": "pending_review",
                "review_id": p.review_id,
                "timed_out": true,
            }))),
            Collected::NotHere => Ok(refused(&ApiError::not_found(format!(
                "no statement of yours is waiting on review {}",
                p.review_id
            )))),
        }
    }

    #[tool(
        description = "List the tables your task can see, or with `table`, that table's columns and keys. Recorded like any read."
    )]
    async fn describe(
        &self,
        Extension(parts): Extension<axum::http::request::Parts>,
        RequestId(request_id): RequestId,
        Parameters(p): Parameters<Describe>,
    ) -> Result<CallToolResult, ErrorData> {
        let caps = Caps {
            max_rows: MAX_ROWS,
            max_bytes: MAX_RESULT_BYTES,
        };
        let statements = match p.table {
            None => vec![Statement {
                sql: LIST_TABLES.into(),
                params: Vec::new(),
                caps,
            }],
            Some(table) => {
                let (schema, name) = match table.split_once('.') {
                    Some((schema, name)) => (Some(schema.to_owned()), name.to_owned()),
                    None => (None, table),
                };
                vec![Statement {
                    sql: TABLE_COLUMNS.into(),
                    params: vec![schema, Some(name)],
                    caps,
                }]
            }
        };
        self.statements(&parts, &request_id, &p.task_id, statements)
            .await
    }

    #[tool(description = "Show a task: its status, window and who approved it.")]
    async fn task_status(
        &self,
        Extension(parts): Extension<axum::http::request::Parts>,
        Parameters(p): Parameters<TaskId>,
    ) -> Result<CallToolResult, ErrorData> {
        let caller = caller_of(&parts)?;
        match tasks::get_task(State(self.state.clone()), caller, Path(p.task_id)).await {
            Ok(Json(view)) => Ok(CallToolResult::structured(task_answer(&view))),
            Err(e) => Ok(refused(&e)),
        }
    }

    #[tool(description = "End your task now, when the work is done. Its access stops at once.")]
    async fn end_task(
        &self,
        Extension(parts): Extension<axum::http::request::Parts>,
        Parameters(p): Parameters<TaskId>,
    ) -> Result<CallToolResult, ErrorData> {
        let caller = caller_of(&parts)?;
        match tasks::end_task(State(self.state.clone()), caller, Path(p.task_id)).await {
            Ok(Json(view)) => Ok(CallToolResult::structured(task_answer(&view))),
            Err(e) => Ok(refused(&e)),
        }
    }
}

/// Tables and views outside the system schemas.
const LIST_TABLES: &str = "SELECT table_schema, table_name, table_type FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY table_schema, table_name";

/// One table's columns, with the keys each is part of.
const TABLE_COLUMNS: &str = "SELECT c.table_schema, c.column_name, c.data_type, c.is_nullable, c.column_default, (SELECT string_agg(tc.constraint_type, ', ' ORDER BY tc.constraint_type) FROM information_schema.key_column_usage k JOIN information_schema.table_constraints tc ON tc.constraint_schema = k.constraint_schema AND tc.constraint_name = k.constraint_name WHERE k.table_schema = c.table_schema AND k.table_name = c.table_name AND k.column_name = c.column_name) AS keys FROM information_schema.columns c WHERE ($1::text IS NULL OR c.table_schema = $1) AND c.table_name = $2 AND c.table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY c.table_schema, c.ordinal_position";

/// A task as a tool answers it: what the agent needs to go on.
fn task_answer(view: &TaskView) -> Value {
    let status = match view.status.as_str() {
        "pending" => "pending_approval",
        other => other,
    };
    json!({
        "status": status,
        "task_id": view.id,
        "task": view.name,
        "connection": view.connection,
        "access": view.access,
        "window": view.window,
        "ends_at": view.ends_at,
        "review_id": view.review,
        "approvers": view.approvers,
        "approved_by": view.approval.as_ref().map(|a| a.by.subject.clone()),
    })
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("taskgate", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Database access for one named task at a time. Call list_connections, then request_access; when it is active, run statements with query. Every statement is recorded. End the task with end_task when done.",
            )
    }
}
