//! `GET /api/images/{id}` and `/thumbnail`: stored images by opaque id, cacheable forever.

use super::language::text;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use zimage_contract::ErrorBody;

use super::JobIdParam;
use super::error::ApiError;
use crate::images::Variant;
use crate::state::AppState;

/// The image routes.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/images/{id}", get(full))
        .route("/api/images/{id}/thumbnail", get(thumbnail))
}

#[utoipa::path(get, path = "/api/images/{id}", tag = "images", params(("id" = String, Path, description = "The job's id (a UUID), which is also its image's id.")),
    responses(
        (status = 200, description = "The PNG, cacheable forever.", content_type = "image/png"),
        (status = 404, description = "No such image (`not_found`).", body = ErrorBody),
    ))]
pub(super) async fn full(state: State<AppState>, id: JobIdParam) -> Result<Response, ApiError> {
    serve(state, id, Variant::Full).await
}

#[utoipa::path(get, path = "/api/images/{id}/thumbnail", tag = "images", params(("id" = String, Path, description = "The job's id (a UUID), which is also its image's id.")),
    responses(
        (status = 200, description = "A small JPEG of the image, cacheable forever.", content_type = "image/jpeg"),
        (status = 404, description = "No such image (`not_found`).", body = ErrorBody),
    ))]
pub(super) async fn thumbnail(state: State<AppState>, id: JobIdParam) -> Result<Response, ApiError> {
    serve(state, id, Variant::Thumbnail).await
}

async fn serve(
    State(state): State<AppState>,
    JobIdParam(id): JobIdParam,
    variant: Variant,
) -> Result<Response, ApiError> {
    let no_such_image = || ApiError::NotFound(text().no_such_image);
    let body = match variant {
        // Through the jobs: the image saved last is served from memory at its first read, as the
        // pieces it was written from (its length known, so the answer still says it).
        Variant::Full => {
            let png = state.jobs.image_pieces(id).await?.ok_or_else(no_such_image)?;
            let length = png.len();
            let pieces = png
                .into_pieces()
                .into_iter()
                .map(Ok::<_, std::convert::Infallible>);
            let mut body = Body::from_stream(futures_util::stream::iter(pieces)).into_response();
            body.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
            body
        }
        Variant::Thumbnail => state
            .jobs
            .image(id, variant)
            .await?
            .ok_or_else(no_such_image)?
            .into_response(),
    };
    let disposition = format!(
        "inline; filename=\"z-image-{id}.{}\"",
        if variant == Variant::Full { "png" } else { "jpg" }
    );
    Ok((
        [
            (header::CONTENT_TYPE, variant.content_type().to_owned()),
            // An id always names the same pixels, so browsers may keep them.
            (
                header::CACHE_CONTROL,
                "private, max-age=31536000, immutable".to_owned(),
            ),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}
