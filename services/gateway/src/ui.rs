//! The dashboard at `/`: static files from the UI directory, sent with the
//! headers of a hardened page.

use std::path::Path;

use poem::{
    EndpointExt, Response,
    endpoint::{BoxEndpoint, StaticFilesEndpoint, make_sync},
    error::NotFoundError,
    http::header,
    middleware::SetHeader,
    web::Html,
};

/// The page holds the operator's token for its tab, so nothing but its own
/// files may run or style it: no inline script or style (an injected one
/// never runs), nothing fetched from elsewhere (the token cannot be sent
/// away), no framing (no clickjacking of the gremlin switches). `img-src`
/// and `form-action` are what the page itself uses; everything unnamed
/// falls back to `default-src 'none'`.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

/// The headers every file of the dashboard carries: the policy above, no
/// MIME sniffing (a file is run or styled only as the type it was sent
/// as), and no `Referer`, so a link out of the page tells the other site
/// nothing about where the operator was.
fn hardened() -> SetHeader {
    SetHeader::new()
        .overriding(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY)
        .overriding(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .overriding(header::REFERRER_POLICY, "no-referrer")
}

/// The files under `dir` with `index.html` at `/`, or, without a dashboard
/// there, a short page at `/` that says so and where the API is.
pub fn endpoint(dir: &Path) -> BoxEndpoint<'static, Response> {
    if dir.join("index.html").is_file() {
        return StaticFilesEndpoint::new(dir)
            .index_file("index.html")
            .with(hardened())
            .map_to_response()
            .boxed();
    }
    tracing::warn!(dir = %dir.display(), "no dashboard (index.html) there; `/` answers a note");
    let note = Html(format!(
        "<!doctype html><meta charset=utf-8><title>Valerix API gateway</title>\
         <h1>Valerix API gateway</h1>\
         <p>The dashboard is not installed: there is no <code>index.html</code> in \
         <code>{}</code> (set <code>VALERIX_UI_DIR</code> or <code>--ui-dir</code>).</p>\
         <p>The API is here all the same: <a href=\"/docs\">/docs</a> (Swagger UI), \
         <a href=\"/health\">/health</a>, <code>/api/orders</code>, \
         <code>/api/inventory</code>, <code>/api/payments</code>.</p>",
        html_escape(&dir.display().to_string())
    ));
    make_sync(move |req| {
        if req.uri().path() == "/" {
            Ok(note.clone())
        } else {
            Err(NotFoundError)
        }
    })
    .with(hardened())
    .map_to_response()
    .boxed()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
