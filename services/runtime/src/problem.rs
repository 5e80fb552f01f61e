//! Errors on the wire: RFC 9457 problem details, one mapping for every service.

use std::fmt::Display;

use poem::{IntoResponse, PathPattern, Response, http::StatusCode};
use poem_openapi::{ApiResponse, Object, payload::Json};

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Object, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    /// A short machine-readable kind, e.g. `out-of-stock`, `invalid-request`.
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub kind: String,
    /// The HTTP reason phrase for `status`.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What was wrong, for a person.
    pub detail: String,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &str, detail: impl Display) -> Self {
        Self {
            kind: kind.to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.to_string(),
        }
    }
}

/// Every error answer a Valerix operation can give. Handlers return
/// `Result<_, ProblemResponse>`; services convert their typed errors into it.
#[derive(Debug, ApiResponse)]
pub enum ProblemResponse {
    /// The request is malformed.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// Gremlins are not enabled on this service.
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(Json<Problem>),
    /// No such resource.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    /// The request conflicts with the current state.
    #[oai(status = 409, content_type = "application/problem+json")]
    Conflict(Json<Problem>),
    /// Well-formed but semantically wrong.
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Problem>),
    /// A dependency is unavailable; try again later.
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>),
    /// Something failed inside the service.
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
}

impl ProblemResponse {
    pub fn bad_request(kind: &str, detail: impl Display) -> Self {
        Self::BadRequest(Json(Problem::new(StatusCode::BAD_REQUEST, kind, detail)))
    }
    pub fn forbidden(kind: &str, detail: impl Display) -> Self {
        Self::Forbidden(Json(Problem::new(StatusCode::FORBIDDEN, kind, detail)))
    }
    pub fn not_found(kind: &str, detail: impl Display) -> Self {
        Self::NotFound(Json(Problem::new(StatusCode::NOT_FOUND, kind, detail)))
    }
    pub fn conflict(kind: &str, detail: impl Display) -> Self {
        Self::Conflict(Json(Problem::new(StatusCode::CONFLICT, kind, detail)))
    }
    pub fn unprocessable(kind: &str, detail: impl Display) -> Self {
        Self::Unprocessable(Json(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            kind,
            detail,
        )))
    }
    pub fn unavailable(kind: &str, detail: impl Display) -> Self {
        Self::Unavailable(Json(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            kind,
            detail,
        )))
    }
    /// Logs the cause and answers without leaking internals.
    pub fn internal(cause: impl Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::Internal(Json(Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the service failed to handle the request; it has been logged",
        )))
    }
}

/// A database error that is not one the caller can fix is our failure, but
/// a lost connection is a dependency being down: 503 tells clients to retry.
impl From<sqlx::Error> for ProblemResponse {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                Self::unavailable("database-unavailable", err)
            }
            other => Self::internal(other),
        }
    }
}

fn kind_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "not-found",
        StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload-too-large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
        StatusCode::LENGTH_REQUIRED => "length-required",
        s if s.is_client_error() => "invalid-request",
        _ => "internal",
    }
}

/// The edge: whatever error escaped a handler or the framework (a JSON parse
/// failure, an unknown route, a body too large) leaves as problem JSON.
pub async fn error_to_problem(err: poem::Error) -> Response {
    if err.is_from_response() {
        return err.into_response();
    }
    let status = err.status();
    let detail = if status.is_server_error() {
        tracing::error!(error = %err, "unhandled error");
        "the service failed to handle the request; it has been logged".to_owned()
    } else {
        err.to_string()
    };
    let problem = Problem::new(status, kind_for(status), detail);
    let mut resp = Json(problem)
        .with_content_type("application/problem+json")
        .with_status(status)
        .into_response();
    // The matched route (if any) labels the request's metrics.
    if let Some(route) = err.data::<PathPattern>() {
        resp.set_data(route.clone());
    }
    resp
}
