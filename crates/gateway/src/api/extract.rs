//! Extractors that answer bad input with the API's own JSON errors.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;
use taskgate_policy::{Actor, Identity, Matcher};

use super::AppState;
use super::error::ApiError;
use crate::identity::AuthError;

/// The authenticated caller and the roles the config gives it.
#[derive(Clone, Debug)]
pub struct Caller {
    pub identity: Identity,
    pub admin: bool,
    pub auditor: bool,
}

impl Caller {
    pub fn actor(&self) -> Actor {
        Actor {
            identity: self.identity.clone(),
            admin: self.admin,
        }
    }

    /// Admins and auditors read the whole trail.
    pub fn reads_everything(&self) -> bool {
        self.admin || self.auditor
    }
}

impl Caller {
    /// `identity` with the roles the config gives it.
    pub fn for_identity(state: &AppState, identity: Identity) -> Self {
        let roles = &state.config.roles;
        Caller {
            admin: Matcher::any_matches(&roles.admins, &identity),
            auditor: Matcher::any_matches(&roles.auditors, &identity),
            identity,
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let refuse = |message: &str| {
            state.metrics.api_auth_failures.inc();
            ApiError::unauthenticated(message)
        };
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(refuse("missing Authorization: Bearer <token> header"));
        };
        let value = value
            .to_str()
            .map_err(|_| refuse("the Authorization header is not valid text"))?;
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => {
                return Err(refuse(
                    "the Authorization header must use the Bearer scheme",
                ));
            }
        };
        let identity = match state.auth.authenticate(token).await {
            Ok(identity) => identity,
            Err(AuthError::NotMine) => return Err(refuse("the bearer token is not valid")),
            Err(AuthError::Invalid(reason)) => return Err(refuse(&reason)),
        };
        Ok(Caller::for_identity(state, identity))
    }
}

/// A JSON body: unknown fields, malformed JSON and oversized bodies get
/// clear errors. An empty body reads as `{}`, so optional-body endpoints
/// (approve, revoke) accept a bare POST.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if let Some(content_type) = req.headers().get(header::CONTENT_TYPE) {
            let json = content_type.to_str().is_ok_and(|ct| {
                ct.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/json")
            });
            if !json {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "the request body must be application/json",
                ));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!(
                        "the request body is larger than {} bytes",
                        super::MAX_BODY_BYTES
                    ),
                )
            } else {
                ApiError::invalid(format!("cannot read the request body: {rejection}"))
            }
        })?;
        let body: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(body)
            .map(ApiJson)
            .map_err(|e| ApiError::invalid(format!("request body: {e}")))
    }
}

/// Query parameters, with unknown or malformed ones refused clearly.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| ApiQuery(q))
            .map_err(|e| ApiError::invalid(format!("query string: {}", e.body_text())))
    }
}

/// Longest accepted reason, reference or comment, in characters.
pub const MAX_TEXT_CHARS: usize = 2_000;

/// Free text from a caller: bounded in length, without control characters
/// (they could redraw what an approver or auditor reads in a terminal);
/// blank means none.
pub fn checked_text(field: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        Some(text) if text.chars().count() > MAX_TEXT_CHARS => Err(ApiError::invalid(format!(
            "{field} is longer than {MAX_TEXT_CHARS} characters"
        ))),
        Some(text) if taskgate_audit::display::has_hidden(&text) => {
            Err(ApiError::invalid(format!(
                "{field} holds control characters (newlines, escapes, bidirectional marks); write it on one line of plain text"
            )))
        }
        Some(text) if text.trim().is_empty() => Ok(None),
        other => Ok(other),
    }
}
