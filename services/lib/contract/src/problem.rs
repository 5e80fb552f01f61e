//! Errors on the wire: RFC 9457 problem details, one mapping for every service.

use std::{fmt::Display, marker::PhantomData};

use poem::{IntoResponse, PathPattern, Response, http::StatusCode};
use poem_openapi::{
    ApiResponse, Object,
    payload::Json,
    registry::{MetaHeader, MetaMediaType, MetaResponse, MetaResponses, Registry},
    types::Type,
};

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Object, serde::Serialize, serde::Deserialize)]
#[oai(example)]
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

impl poem_openapi::types::Example for Problem {
    fn example() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-request",
            "failed to parse \"Quantity\": quantity must be between 1 and 1000, got 0",
        )
    }
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

/// A problem on its own is a complete answer: its status, problem JSON.
impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Json(self)
            .with_content_type("application/problem+json")
            .with_status(status)
            .into_response()
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
    /// A dependency is unavailable; try again after `Retry-After` seconds.
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>, #[oai(header = "Retry-After")] u64),
    /// Something failed inside the service.
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
}

impl ProblemResponse {
    pub fn problem(&self) -> &Problem {
        match self {
            Self::BadRequest(p)
            | Self::Forbidden(p)
            | Self::NotFound(p)
            | Self::Conflict(p)
            | Self::Unprocessable(p)
            | Self::Unavailable(p, _)
            | Self::Internal(p) => &p.0,
        }
    }

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
        Self::Unavailable(
            Json(Problem::new(StatusCode::SERVICE_UNAVAILABLE, kind, detail)),
            RETRY_AFTER_SECS,
        )
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

/// How long a client is asked to wait after a 503: a database failover
/// takes seconds, and a shed request may go again at once.
pub const RETRY_AFTER_SECS: u64 = 1;

/// A database error that is not one the caller can fix is our failure, but
/// a database that cannot take the write now (down, restarting, failing
/// over, read-only) is a dependency being down: 503 tells clients to retry.
#[cfg(feature = "db")]
/// Whether the database could not take the statement now, rather than
/// refused it: the pool found no connection in time, the connection broke
/// (the server or its node died, or HAProxy cut it when the node lost its
/// primary role), the server is shutting down or starting up, or it is a
/// standby (read-only, e.g. for the moment after a failover while the new
/// primary finishes its promotion). The statement may go again later.
///
/// A write that fails this way during its COMMIT has an unknown outcome:
/// the caller must not read it as failed (nor as done); the saga finds out
/// by asking again, every step being idempotent.
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // Class 08: connection exception. 57P01..57P03: the server is
            // shutting down, crashed, or not yet accepting connections.
            // 25006: read-only transaction (a standby). 53300: too many
            // connections.
            code.starts_with("08")
                || matches!(&*code, "57P01" | "57P02" | "57P03" | "25006" | "53300")
        }),
        _ => false,
    }
}

#[cfg(feature = "db")]
impl From<sqlx::Error> for ProblemResponse {
    fn from(err: sqlx::Error) -> Self {
        if is_unavailable(&err) {
            Self::unavailable("database-unavailable", err)
        } else {
            Self::internal(err)
        }
    }
}

/// What the error answers shared by many operations mean, for the specs.
pub const INVALID_PARAMS: &str =
    "A path, query or header parameter is malformed or out of range; `detail` names it.";
pub const INVALID_BODY: &str = "The request is malformed: a path, query or header parameter, or \
     the JSON body (syntax, nesting deeper than 128, wrong types, missing or unknown fields, \
     values out of range); `detail` says which.";
pub const TOO_LARGE: &str = "The body is larger than the service accepts (64 KiB by default).";
pub const NOT_JSON: &str = "The body is not declared as JSON (`Content-Type: application/json`).";
pub const UNAVAILABLE: &str = "Not now; retry later. `database-unavailable`: the database cannot \
     be reached. `overloaded`: the service is at its limit of requests in flight \
     (`--max-in-flight`) and sheds this one at once, with `Retry-After` in seconds.";
pub const INTERNAL: &str = "The service failed; the cause is logged, not returned.";

/// The error answers one operation can give, each with what it means there.
/// Declared with [`problem_set!`](crate::problem_set).
pub trait ProblemSet: Send + Sync + 'static {
    const ANSWERS: &'static [(u16, &'static str)];
}

/// Declares a [`ProblemSet`]: `problem_set!(pub GetErrors { 404 => "No such order." })`.
#[macro_export]
macro_rules! problem_set {
    ($(#[$doc:meta])* $vis:vis $name:ident { $($status:literal => $what:expr),+ $(,)? }) => {
        $(#[$doc])*
        $vis enum $name {}
        impl $crate::problem::ProblemSet for $name {
            const ANSWERS: &'static [(u16, &'static str)] = &[$(($status, $what)),+];
        }
    };
}

/// A handler's error: any [`ProblemResponse`], but documented as exactly the
/// answers `S` lists, so each operation's spec shows the errors it can give
/// rather than every error any operation can give.
pub struct Problems<S>(ProblemResponse, PhantomData<S>);

impl<S> std::fmt::Debug for Problems<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<S: ProblemSet, E: Into<ProblemResponse>> From<E> for Problems<S> {
    fn from(err: E) -> Self {
        let err = err.into();
        let status = err.problem().status;
        // The answer still goes out; the spec is what is wrong, so say so
        // loudly (the schemathesis run also fails on undocumented statuses).
        if !S::ANSWERS.iter().any(|(s, _)| *s == status) {
            tracing::error!(
                status,
                set = std::any::type_name::<S>(),
                "answering with a status the operation does not document"
            );
        }
        Self(err, PhantomData)
    }
}

impl<S: Send> IntoResponse for Problems<S> {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

impl<S: Send> From<Problems<S>> for poem::Error {
    fn from(p: Problems<S>) -> Self {
        poem::Error::from_response(p.into_response())
    }
}

impl<S: ProblemSet> ApiResponse for Problems<S> {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: S::ANSWERS
                .iter()
                .map(|&(status, description)| MetaResponse {
                    description,
                    status: Some(status),
                    status_range: None,
                    content: vec![MetaMediaType {
                        content_type: "application/problem+json",
                        schema: Problem::schema_ref(),
                    }],
                    headers: if status == 503 {
                        vec![MetaHeader {
                            name: "Retry-After".to_owned(),
                            description: Some("Seconds to wait before trying again.".to_owned()),
                            required: true,
                            deprecated: false,
                            schema: u64::schema_ref(),
                        }]
                    } else {
                        vec![]
                    },
                })
                .collect(),
        }
    }

    fn register(registry: &mut Registry) {
        Problem::register(registry);
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

/// Parse errors quote the offending value, which may be most of a 64 KiB
/// body: enough of it to say what was wrong, not an echo of the whole input.
/// The middle goes, because the end says where the value was
/// ("occurred while parsing ...").
fn clip(detail: String) -> String {
    const KEEP: usize = 150;
    if detail.len() <= 2 * KEEP + 20 {
        return detail;
    }
    let mut head = KEEP;
    while !detail.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = detail.len() - KEEP;
    while !detail.is_char_boundary(tail) {
        tail += 1;
    }
    format!("{} … {}", &detail[..head], &detail[tail..])
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
    } else if let Some(e) = err.downcast_ref::<poem_openapi::error::ParsePathError>() {
        // poem-openapi names path parameters `param0`, `param1`, ... here,
        // which would only confuse; every operation has at most one.
        clip(format!("invalid path parameter: {}", e.reason))
    } else {
        clip(err.to_string())
    };
    let mut resp = Problem::new(status, kind_for(status), detail).into_response();
    // The matched route (if any) labels the request's metrics.
    if let Some(route) = err.data::<PathPattern>() {
        resp.set_data(route.clone());
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_details_are_clipped_in_the_middle_on_char_boundaries() {
        let clipped = clip(format!("start {} end", "é".repeat(400)));
        assert!(clipped.len() < 320, "{}", clipped.len());
        assert!(clipped.starts_with("start é") && clipped.ends_with("é end"));
        assert!(clipped.contains(" … "));
        assert_eq!(clip("short".into()), "short");
    }

    #[test]
    fn a_503_says_when_to_come_back() {
        let resp =
            ProblemResponse::unavailable("database-unavailable", "no primary").into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            resp.headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
            Some("1")
        );
        problem_set!(Down { 503 => UNAVAILABLE });
        let meta = Problems::<Down>::meta();
        assert_eq!(meta.responses[0].headers[0].name, "Retry-After");
    }

    problem_set!(Demo { 404 => "gone", 500 => INTERNAL });

    #[test]
    fn a_problem_set_documents_its_answers_with_the_problem_schema() {
        let meta = Problems::<Demo>::meta();
        let statuses: Vec<_> = meta.responses.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [Some(404), Some(500)]);
        assert!(
            meta.responses
                .iter()
                .all(|r| r.content[0].content_type == "application/problem+json")
        );
        let err: Problems<Demo> = ProblemResponse::not_found("no-thing", "no thing").into();
        assert_eq!(err.into_response().status(), StatusCode::NOT_FOUND);
    }
}
