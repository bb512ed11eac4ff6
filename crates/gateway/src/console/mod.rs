//! The web console at `/ui`, for approvers and auditors: reviews that
//! update live, tasks and their stories, search with export, integrity and
//! sinks. Server-rendered with maud (checked at compile time), its one
//! stylesheet and script embedded in the binary.
//!
//! Every page acts through the API's own handlers with the signed-in
//! caller, so roles are the API's: an agent sees its own tasks, approvers
//! what they may decide, auditors everything read-only, admins act.
//! Every response forbids framing and carries a strict Content-Security-
//! Policy; every POST must carry the session's CSRF token.

mod integrity;
mod layout;
mod reviews;
mod search;
mod session;
mod signin;
mod tasks;

use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::html;

pub use integrity::LastVerify;
pub use session::Sessions;

use crate::api::extract::Caller;
use crate::api::{ApiError, AppState};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The signed-in person, with the API's roles and the session's CSRF token.
pub struct Viewer {
    pub caller: Caller,
    pub csrf: String,
}

/// Why a page was not served: not signed in (to the sign-in page), or the
/// API's refusal, shown as a page.
pub enum Refused {
    SignIn,
    Api(ApiError),
}

impl From<ApiError> for Refused {
    fn from(e: ApiError) -> Self {
        Refused::Api(e)
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::SignIn => Redirect::to("/ui/login").into_response(),
            Refused::Api(e) => {
                let status = e.status();
                tracing::info!(code = e.code(), message = ?e.message(), "console request refused");
                let page = layout::bare(
                    "Refused",
                    html! {
                        main.narrow {
                            h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
                            p.error { (e.message()) }
                            p { a href="/ui" { "Back to the console" } }
                        }
                    },
                );
                (status, page).into_response()
            }
        }
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Refused;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Refused> {
        let session = state
            .console
            .get(&parts.headers)
            .await
            .ok_or(Refused::SignIn)?;
        Ok(Viewer {
            caller: Caller::for_identity(state, session.identity),
            csrf: session.csrf,
        })
    }
}

impl Viewer {
    /// Refuses a form another site sent, or whose CSRF token is not this
    /// session's: every POST of the console goes through here.
    pub fn check_form(&self, headers: &axum::http::HeaderMap, sent: &str) -> Result<(), Refused> {
        signin::check_same_origin(headers)?;
        if session::same(&self.csrf, sent) {
            Ok(())
        } else {
            Err(Refused::Api(ApiError::forbidden(
                "the form's CSRF token is missing or not this session's: reload the page and try again",
            )))
        }
    }
}

/// A form that carries only the session's CSRF token.
#[derive(serde::Deserialize)]
pub struct CsrfForm {
    /// Missing is refused as a wrong token (403), not as a bad form.
    #[serde(default)]
    pub csrf: String,
}

/// Security headers on every console response.
async fn secure(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn asset_css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        layout::CSS,
    )
        .into_response()
}

async fn asset_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        layout::JS,
    )
        .into_response()
}

async fn home(viewer: Result<Viewer, Refused>) -> Response {
    match viewer {
        Ok(_) => Redirect::to("/ui/reviews").into_response(),
        Err(_) => Redirect::to("/ui/login").into_response(),
    }
}

async fn not_found() -> Response {
    Refused::Api(ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such page",
    ))
    .into_response()
}

pub fn routes() -> Router<AppState> {
    let ui = Router::new()
        .route("/", get(home))
        .route("/assets/app.css", get(asset_css))
        .route("/assets/app.js", get(asset_js))
        .route("/login", get(signin::page))
        .route("/login/token", post(signin::with_token))
        .route("/login/oidc", get(signin::start))
        .route("/callback", get(signin::callback))
        .route("/logout", post(signin::logout))
        .route("/reviews", get(reviews::page))
        .route("/reviews/events", get(reviews::events))
        .route("/reviews/{id}/{verb}", post(reviews::decide))
        .route("/tasks", get(tasks::list))
        .route("/tasks/{id}", get(tasks::show))
        .route("/tasks/{id}/story.txt", get(tasks::story_text))
        .route("/tasks/{id}/story.json", get(tasks::story_json))
        .route("/tasks/{id}/revoke", post(tasks::revoke))
        .route("/search", get(search::page))
        .route("/search/export.jsonl", get(search::export_jsonl))
        .route("/search/export.csv", get(search::export_csv))
        .route("/integrity", get(integrity::page))
        .route("/integrity/verify", post(integrity::verify))
        .route("/sinks/{name}/redeliver", post(integrity::redeliver))
        .fallback(not_found)
        .layer(middleware::from_fn(secure));
    Router::new().nest("/ui", ui)
}
