//! The web UI's routes: the studio's pages rendered on the server (leptos_axum), the hydrate bundle and
//! static files under `/pkg/` (built by Trunk into `<site root>/pkg`), and the fallback for every other
//! address: the UI's 404 page, or a JSON 404 under `/api/`.
//!
//! The router carries its own state, so the gateway merges it after the API routes.

use std::path::Path;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use leptos::config::LeptosOptions;
use leptos_axum::{LeptosRoutes as _, generate_route_list};
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;
use zimage_contract::{ErrorBody, ErrorDetail};

/// The bundle's file stem: Trunk names it after the `hydrate` crate (`hydrate.js`, `hydrate_bg.wasm`),
/// and the rendered pages load it under that name.
const BUNDLE_NAME: &str = "hydrate";
/// The folder of the site root that Trunk writes, served at `/pkg`.
const PKG_DIR: &str = "pkg";

/// The UI's routes over `site_root` (the folder holding `pkg/`), with their state applied.
pub(super) fn router(site_root: &Path) -> Router {
    let options = LeptosOptions::builder()
        .output_name(BUNDLE_NAME)
        .site_root(site_root.to_string_lossy().into_owned())
        .site_pkg_dir(PKG_DIR)
        .build();
    let routes = generate_route_list(app::app::App);
    // The names carry no hash, so browsers revalidate (a cheap 304) instead of keeping a stale bundle.
    let bundle = tower::ServiceBuilder::new()
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        ))
        .service(ServeDir::new(site_root.join(PKG_DIR)).precompressed_gzip());
    let page_options = options.clone();
    Router::new()
        .leptos_routes_with_context(&options, routes, page_context, move || {
            app::shell::shell(page_options.clone())
        })
        .nest_service("/pkg", bundle)
        .fallback(fallback)
        .with_state(options)
}

/// What every rendered page gets from its request: the nonce of its inline scripts and its language.
fn page_context() {
    super::access::provide_page_nonce();
    super::language::provide_for_page();
    let path = leptos::prelude::use_context::<axum::http::request::Parts>()
        .map_or_else(|| "/".to_owned(), |parts| parts.uri.path().to_owned());
    leptos::prelude::provide_context(app::app::Page::at(&path));
}

/// Any other address: a JSON 404 for API clients, the UI's "not found" page (status 404) for people.
async fn fallback(uri: Uri, State(options): State<LeptosOptions>, request: Request) -> Response {
    let path = uri.path();
    if path == "/api" || path.starts_with("/api/") {
        let body = ErrorBody {
            error: ErrorDetail {
                code: "not_found".to_owned(),
                message: super::language::text().no_endpoint.to_owned(),
                field: None,
            },
        };
        return (StatusCode::NOT_FOUND, Json(body)).into_response();
    }
    // Renders the app, whose route table shows "not found" for this path, and answers 404.
    let render =
        leptos_axum::file_and_error_handler_with_context::<LeptosOptions, _>(page_context, app::shell::shell);
    render(uri, State(options), request).await
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use tower::ServiceExt as _;

    use super::*;

    async fn get(router: Router, uri: &str, accept_encoding: Option<&str>) -> (StatusCode, Response) {
        let mut request = Request::get(uri);
        if let Some(encoding) = accept_encoding {
            request = request.header(header::ACCEPT_ENCODING, encoding);
        }
        let response = router
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        (response.status(), response)
    }

    async fn text(response: Response) -> String {
        String::from_utf8(to_bytes(response.into_body(), 4 << 20).await.unwrap().to_vec()).unwrap()
    }

    fn site() -> tempfile::TempDir {
        let site = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(site.path().join("pkg")).unwrap();
        std::fs::write(site.path().join("pkg/main.css"), "body{}").unwrap();
        std::fs::write(site.path().join("pkg/hydrate.js"), "export default 1").unwrap();
        std::fs::write(site.path().join("pkg/hydrate.js.gz"), b"\x1f\x8bnot really").unwrap();
        site
    }

    #[tokio::test]
    async fn the_studio_is_rendered_on_the_server_with_the_bundle_and_styles_it_needs() {
        let site = site();
        let (status, response) = get(router(site.path()), "/", None).await;
        assert_eq!(status, StatusCode::OK);
        let html = text(response).await;
        assert!(html.contains("Z-Image-Turbo (Local)"), "{html}");
        assert!(html.contains(r#"placeholder="Describe the image...""#), "{html}");
        assert!(
            html.contains("/pkg/hydrate.js") && html.contains("hydrate_bg"),
            "{html}"
        );
        assert!(
            html.contains("/pkg/main.css") && html.contains("/pkg/manifest.webmanifest"),
            "{html}"
        );
    }

    #[tokio::test]
    async fn the_bundle_is_served_from_pkg_gzipped_when_the_browser_accepts_it() {
        let site = site();
        let (status, response) = get(router(site.path()), "/pkg/main.css", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-cache");
        assert_eq!(text(response).await, "body{}");

        let (status, response) = get(router(site.path()), "/pkg/hydrate.js", Some("gzip")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_ENCODING], "gzip");
    }

    #[tokio::test]
    async fn an_unknown_page_is_the_uis_not_found_page_with_status_404() {
        let site = site();
        let (status, response) = get(router(site.path()), "/no/such/page", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(text(response).await.contains("Page not found"));
        let (status, _) = get(router(site.path()), "/pkg/missing.js", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn an_unknown_api_path_is_a_json_404() {
        let site = site();
        let (status, response) = get(router(site.path()), "/api/nothing", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let body: ErrorBody = serde_json::from_str(&text(response).await).unwrap();
        assert_eq!(body.error.code, "not_found");
    }
}
