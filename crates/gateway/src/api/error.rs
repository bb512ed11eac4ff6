//! API errors: `{"error": {"code", "message"}}` with the right status. The
//! message is written for the client; internal details go to the log only.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use taskgate_policy::DomainError;
use taskgate_store::{OpError, StoreError};
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `unauthenticated`, `forbidden`,
    /// `self_approval`, `policy_refused`, `not_found`, `conflict`,
    /// `invalid_request`, `payload_too_large`, `unsupported_media_type`,
    /// `internal`.
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// A failure the client cannot fix; the detail is logged, not returned.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "internal error answering an API request");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the gateway could not complete the request; see its log",
        )
    }

    /// The store could not commit: the change did not happen.
    fn unavailable(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "store refused a change");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the audit log could not durably record this change, so it is refused; see the gateway's log",
        )
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        let message = error.to_string();
        match error {
            DomainError::IllegalTransition { .. } | DomainError::Conflict(_) => {
                Self::new(StatusCode::CONFLICT, "conflict", message)
            }
            DomainError::SelfApproval => Self::new(StatusCode::FORBIDDEN, "self_approval", message),
            DomainError::Forbidden(_) => Self::forbidden(message),
            DomainError::Invalid(_) => Self::invalid(message),
            DomainError::Limit(_) => Self::new(StatusCode::TOO_MANY_REQUESTS, "limit", message),
        }
    }
}

impl From<OpError> for ApiError {
    fn from(error: OpError) -> Self {
        match error {
            OpError::Domain(e) => e.into(),
            OpError::NotFound(what) => Self::not_found(format!("{what} not found")),
            OpError::Store(e) => Self::unavailable(e),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        Self::internal(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let unauthenticated = self.status == StatusCode::UNAUTHORIZED;
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if unauthenticated {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
