//! Request body limits, enforced before any handler reads the body.
//!
//! Most HTTP clients (Python's urllib, Node's fetch, most SDKs) send the
//! whole body before they read an answer; they do not ask with
//! `Expect: 100-continue`. A server that answers 413 and closes with their
//! bytes still unread makes the kernel reset the connection, and such a
//! client sees a broken pipe instead of the 413. So the rest of an
//! oversized body is read and thrown away, up to a bound in size and time,
//! before the answer goes out.

use std::time::Duration;

use poem::{Body, Endpoint, EndpointExt, IntoEndpoint, Request, Response, http::StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The most of an oversized body read and discarded; past it the 413 goes
/// out at once (and such a client may see a reset).
pub const DISCARD_UP_TO: u64 = 16 * 1024 * 1024;

/// The longest spent discarding: a client sending slowly gets no more.
pub const DISCARD_WITHIN: Duration = Duration::from_secs(5);

fn too_large(max: usize) -> poem::Error {
    poem::Error::from_string(
        format!("request body is larger than the limit of {max} bytes"),
        StatusCode::PAYLOAD_TOO_LARGE,
    )
}

/// Reads and drops what is left of a body, within the bounds above.
async fn discard(body: impl AsyncRead + Unpin) {
    let mut rest = body.take(DISCARD_UP_TO);
    let _ = tokio::time::timeout(
        DISCARD_WITHIN,
        tokio::io::copy(&mut rest, &mut tokio::io::sink()),
    )
    .await;
}

/// Answers 413 for a body over `max` bytes: when Content-Length says so,
/// otherwise (chunked uploads) as soon as the reading passes the limit;
/// either way after the rest of the body has been read (see above).
pub fn limit_body<E>(ep: E, max: usize) -> impl Endpoint<Output = Response>
where
    E: IntoEndpoint,
    E::Endpoint: 'static,
{
    ep.into_endpoint()
        .map_to_response()
        .around(move |ep, mut req: Request| async move {
            let declared = req
                .header("content-length")
                .and_then(|v| v.trim().parse::<u64>().ok());
            match declared {
                Some(len) if len > max as u64 => {
                    if len <= DISCARD_UP_TO {
                        discard(req.take_body().into_async_read()).await;
                    }
                    return Err(too_large(max));
                }
                Some(_) => {}
                None if req.header("transfer-encoding").is_some() => {
                    let mut body = req.take_body().into_async_read();
                    let mut kept = Vec::new();
                    (&mut body)
                        .take(max as u64 + 1)
                        .read_to_end(&mut kept)
                        .await
                        .map_err(|e| {
                            poem::Error::from_string(e.to_string(), StatusCode::BAD_REQUEST)
                        })?;
                    if kept.len() > max {
                        discard(body).await;
                        return Err(too_large(max));
                    }
                    req.set_body(Body::from(kept));
                }
                None => {}
            }
            ep.call(req).await
        })
}
