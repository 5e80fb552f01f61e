//! The dashboard at `/`: static files from the UI directory.

use std::path::Path;

use poem::{
    EndpointExt, Response,
    endpoint::{BoxEndpoint, StaticFilesEndpoint, make_sync},
    error::NotFoundError,
    web::Html,
};

/// The files under `dir` with `index.html` at `/`, or, without a dashboard
/// there, a short page at `/` that says so and where the API is.
pub fn endpoint(dir: &Path) -> BoxEndpoint<'static, Response> {
    if dir.join("index.html").is_file() {
        return StaticFilesEndpoint::new(dir)
            .index_file("index.html")
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
    .map_to_response()
    .boxed()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
