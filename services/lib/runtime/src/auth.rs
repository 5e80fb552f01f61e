//! Bearer tokens: who may call an operation that is not for everyone.
//!
//! One check for every service: the token is read from a file when the
//! process starts (systemd `LoadCredential`, or the file `valerix up`
//! writes), compared in constant time, and a refused call answers `401`
//! problem JSON with `WWW-Authenticate: Bearer realm="valerix"`, is logged
//! and counted in `valerix_auth_failures_total{service,reason}`.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

use poem::{
    Endpoint, IntoResponse, Request, Response,
    http::{HeaderValue, Method, StatusCode, header},
};
use subtle::ConstantTimeEq;

use crate::contract::problem::Problem;

/// Refused calls, by service and reason (`missing`, `malformed`, `wrong`,
/// `unconfigured`).
pub const FAILURES_METRIC: &str = "valerix_auth_failures_total";
/// The challenge of every 401 (RFC 6750 §3).
pub const CHALLENGE: &str = r#"Bearer realm="valerix""#;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the token file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the token file {path} is empty")]
    Empty { path: PathBuf },
    #[error("the token in {path} must be printable ASCII without spaces")]
    Invalid { path: PathBuf },
}

/// A secret bearer token. Never printed: `Debug` shows only that it is set.
#[derive(Clone)]
pub struct Token(Arc<str>);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// The token in `path`, surrounding whitespace (a trailing newline)
    /// removed. An empty file is an error: a credential that is silently
    /// absent would leave the operations it guards closed to everyone, or
    /// worse, be mistaken for "no token configured".
    pub fn from_file(path: &Path) -> Result<Self, TokenError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: path.to_owned(),
            source,
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(TokenError::Empty {
                path: path.to_owned(),
            });
        }
        // It travels in a header: visible ASCII only (RFC 6750's b64token
        // is stricter still, but any visible character is safe to send).
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::Invalid {
                path: path.to_owned(),
            });
        }
        Ok(Self(token.into()))
    }

    /// The token in `path` when one is configured.
    pub fn read(path: Option<&Path>) -> Result<Option<Self>, TokenError> {
        path.map(Self::from_file).transpose()
    }

    /// `Bearer <token>`, marked sensitive so HTTP libraries do not log it.
    pub fn authorization(&self) -> HeaderValue {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", self.0))
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer"));
        value.set_sensitive(true);
        value
    }

    /// Constant time in the contents (`subtle`); only a length mismatch
    /// returns early, and a 256-bit random token's length is no secret.
    fn matches(&self, presented: &[u8]) -> bool {
        self.0.as_bytes().ct_eq(presented).into()
    }
}

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No `Authorization` header.
    Missing,
    /// An `Authorization` header that is not `Bearer <token>`.
    Malformed,
    /// A bearer token that is not the one configured.
    Wrong,
    /// This process has no token to compare with: the operations it guards
    /// stay closed.
    Unconfigured,
}

impl Reason {
    pub fn label(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Wrong => "wrong",
            Self::Unconfigured => "unconfigured",
        }
    }
}

/// A refused call: answers 401 problem JSON with the challenge.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("{}", self.detail())]
pub struct Denied {
    pub reason: Reason,
    /// Whose token it takes, e.g. `operator`, `service`.
    pub audience: &'static str,
}

impl Denied {
    fn detail(&self) -> String {
        let audience = self.audience;
        match self.reason {
            Reason::Missing => format!(
                "this operation needs the {audience} token: send Authorization: Bearer <token>"
            ),
            Reason::Malformed => {
                format!("the Authorization header is not Bearer <{audience} token>")
            }
            Reason::Wrong => format!("the bearer token is not the {audience} token"),
            Reason::Unconfigured => format!(
                "this operation needs the {audience} token, and none is configured here: \
                 it is closed to everyone"
            ),
        }
    }

    pub fn problem(&self) -> Problem {
        Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", self)
    }

    /// The `WWW-Authenticate` value: a presented token that failed is an
    /// `invalid_token` (RFC 6750 §3.1), a missing one only the challenge.
    pub fn challenge(&self) -> &'static str {
        match self.reason {
            Reason::Missing | Reason::Unconfigured => CHALLENGE,
            Reason::Malformed | Reason::Wrong => r#"Bearer realm="valerix", error="invalid_token""#,
        }
    }
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        let mut resp = self.problem().into_response();
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(self.challenge()),
        );
        resp
    }
}

/// Admits the holder of one token. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Guard {
    service: &'static str,
    audience: &'static str,
    token: Option<Token>,
}

impl Guard {
    /// Without a token every call is refused (`unconfigured`): a guarded
    /// operation is never open by omission.
    pub fn new(service: &'static str, audience: &'static str, token: Option<Token>) -> Self {
        Self {
            service,
            audience,
            token,
        }
    }

    pub fn is_configured(&self) -> bool {
        self.token.is_some()
    }

    fn reason(&self, req: &Request) -> Option<Reason> {
        let Some(token) = &self.token else {
            return Some(Reason::Unconfigured);
        };
        let Some(value) = req.headers().get(header::AUTHORIZATION) else {
            return Some(Reason::Missing);
        };
        let presented = value.as_bytes();
        // The scheme is case-insensitive (RFC 9110 §11.1).
        let Some(presented) = presented
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case(b"bearer "))
            .map(|_| presented[7..].trim_ascii())
        else {
            return Some(Reason::Malformed);
        };
        (!token.matches(presented)).then_some(Reason::Wrong)
    }

    /// Whether `req` carries the token; a refusal is logged and counted.
    pub fn admit(&self, req: &Request) -> Result<(), Denied> {
        let Some(reason) = self.reason(req) else {
            return Ok(());
        };
        let (service, audience) = (self.service, self.audience);
        metrics::counter!(FAILURES_METRIC, "service" => service, "reason" => reason.label())
            .increment(1);
        tracing::warn!(
            service,
            audience,
            reason = reason.label(),
            method = %req.method(),
            path = req.original_uri().path(),
            peer = %req.remote_addr(),
            "refused: no valid {audience} token"
        );
        Err(Denied { reason, audience })
    }

    /// The guard in front of `inner`, except for the operations in `open`.
    pub fn protect<E: Endpoint>(self, inner: E, open: Vec<(Method, &'static str)>) -> Guarded<E> {
        Guarded {
            inner,
            guard: self,
            open,
        }
    }
}

/// An endpoint whose operations need the guard's token, but for a few
/// that are open to anyone.
pub struct Guarded<E> {
    inner: E,
    guard: Guard,
    open: Vec<(Method, &'static str)>,
}

impl<E: Endpoint> Endpoint for Guarded<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let path = req.uri().path();
        // poem answers HEAD with the GET endpoint.
        let method = if req.method() == Method::HEAD {
            &Method::GET
        } else {
            req.method()
        };
        let open = self
            .open
            .iter()
            .any(|(m, template)| m == method && template_matches(template, path));
        if !open && let Err(denied) = self.guard.admit(&req) {
            return Ok(denied.into_response());
        }
        self.inner.call(req).await.map(IntoResponse::into_response)
    }
}

/// Whether `path` is an instance of `template` (`/orders/{id}` or
/// `/orders/:id`): the same number of segments, literals equal, each
/// parameter a non-empty segment.
pub fn template_matches(template: &str, path: &str) -> bool {
    let (mut t, mut p) = (template.split('/'), path.split('/'));
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(t), Some(p)) => {
                let param = t.starts_with(':') || (t.starts_with('{') && t.ends_with('}'));
                if !(t == p || (param && !p.is_empty())) {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(s: &str) -> Token {
        Token(s.into())
    }

    fn request(authorization: Option<&str>) -> Request {
        let mut req = Request::builder().uri_str("/x");
        if let Some(value) = authorization {
            req = req.header(header::AUTHORIZATION, value);
        }
        req.finish()
    }

    #[test]
    fn the_token_file_is_trimmed_and_an_empty_one_refused() {
        let dir = std::env::temp_dir().join(format!("valerix-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("token");
        std::fs::write(&file, "s3cret\n").expect("write");
        let t = Token::from_file(&file).expect("token");
        assert!(t.matches(b"s3cret"));
        assert_eq!(format!("{t:?}"), "Token(..)");
        std::fs::write(&file, " \n").expect("write");
        assert!(matches!(
            Token::from_file(&file),
            Err(TokenError::Empty { .. })
        ));
        std::fs::write(&file, "two words").expect("write");
        assert!(matches!(
            Token::from_file(&file),
            Err(TokenError::Invalid { .. })
        ));
        assert!(matches!(
            Token::from_file(&dir.join("absent")),
            Err(TokenError::Read { .. })
        ));
        assert!(Token::read(None).expect("none").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_the_configured_bearer_token_is_admitted() {
        let guard = Guard::new("test", "operator", Some(token("abc")));
        assert!(guard.admit(&request(Some("Bearer abc"))).is_ok());
        assert!(guard.admit(&request(Some("bearer abc"))).is_ok());
        let reason = |auth| guard.admit(&request(auth)).map_err(|d| d.reason).err();
        assert_eq!(reason(None), Some(Reason::Missing));
        assert_eq!(reason(Some("Basic abc")), Some(Reason::Malformed));
        assert_eq!(reason(Some("Bearer")), Some(Reason::Malformed));
        assert_eq!(reason(Some("Bearer abd")), Some(Reason::Wrong));
        assert_eq!(reason(Some("Bearer abcd")), Some(Reason::Wrong));
        assert_eq!(reason(Some("Bearer ")), Some(Reason::Wrong));

        let closed = Guard::new("test", "operator", None);
        assert_eq!(
            closed
                .admit(&request(Some("Bearer abc")))
                .map_err(|d| d.reason),
            Err(Reason::Unconfigured)
        );
    }

    #[test]
    fn a_refusal_is_a_401_problem_with_the_challenge() {
        let resp = Denied {
            reason: Reason::Missing,
            audience: "operator",
        }
        .into_response();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            resp.headers().get(header::WWW_AUTHENTICATE),
            Some(&HeaderValue::from_static(CHALLENGE))
        );
        assert_eq!(
            resp.headers().get(header::CONTENT_TYPE),
            Some(&HeaderValue::from_static("application/problem+json"))
        );
    }

    #[test]
    fn templates_match_whole_segments() {
        assert!(template_matches("/orders/{id}", "/orders/abc"));
        assert!(template_matches("/orders/:id", "/orders/abc"));
        assert!(template_matches("/orders", "/orders"));
        assert!(!template_matches("/orders/{id}", "/orders/"));
        assert!(!template_matches("/orders/{id}", "/orders/a/b"));
        assert!(!template_matches("/orders", "/ordersx"));
        assert!(!template_matches("/inventory/{id}", "/inventory"));
    }
}
