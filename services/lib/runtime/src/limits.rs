//! Request body limits, enforced before any handler reads the body.

use poem::{
    Endpoint, EndpointExt, IntoEndpoint, Request, Response, error::ReadBodyError, http::StatusCode,
};

fn too_large(max: usize) -> poem::Error {
    poem::Error::from_string(
        format!("request body is larger than the limit of {max} bytes"),
        StatusCode::PAYLOAD_TOO_LARGE,
    )
}

/// Answers 413 for a body over `max` bytes: at once when Content-Length says
/// so, otherwise (chunked uploads) as soon as the reading passes the limit.
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
                Some(len) if len > max as u64 => return Err(too_large(max)),
                Some(_) => {}
                None if req.header("transfer-encoding").is_some() => {
                    let body =
                        req.take_body()
                            .into_bytes_limit(max)
                            .await
                            .map_err(|e| match e {
                                ReadBodyError::PayloadTooLarge => too_large(max),
                                other => poem::Error::from_string(
                                    other.to_string(),
                                    StatusCode::BAD_REQUEST,
                                ),
                            })?;
                    req.set_body(body);
                }
                None => {}
            }
            ep.call(req).await
        })
}
