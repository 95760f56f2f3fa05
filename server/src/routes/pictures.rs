//! `POST /api/pictures` (a picture or mask to start a job from, as the file's raw bytes) and
//! `GET /api/pictures/{id}` (a kept clean PNG). The only route with a large body: 25 MiB here, the
//! studio's small limit everywhere else. Client file names never reach this code: the body is bytes.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest as _, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use zimage_contract::pictures::{MAX_PICTURE_BYTES, paths};
use zimage_contract::{ErrorBody, PictureKind, PictureUploaded};

use super::error::{ApiError, UploadProblem};
use super::language::text;
use crate::pictures::{Field, PictureId};
use crate::state::AppState;

/// The picture routes; the upload's body limit replaces the studio's default for that route alone.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(
            paths::PICTURES,
            post(upload).route_layer(DefaultBodyLimit::max(MAX_PICTURE_BYTES)),
        )
        .route("/api/pictures/{id}", get(show))
}

#[utoipa::path(post, path = "/api/pictures", tag = "pictures",
    params(("kind" = Option<PictureKind>, Query, description = "`mask` for a mask (a PNG or WebP whose transparent pixels mark what to repaint, kept at its own size); a picture when left out.")),
    request_body(description = "The file's bytes, at most 25 MiB: a PNG, JPEG or WebP (sniffed from the bytes; the Content-Type must be `image/*` or `application/octet-stream`). \
A picture is decoded (at most 12,000 pixels a side and 100 megapixels), turned as its EXIF says, scaled to fit 1024 pixels with each side a multiple of 16 (at least 64), and kept as a PNG without metadata.",
        content(
            (Vec<u8> = "image/jpeg"),
            (Vec<u8> = "image/png"),
            (Vec<u8> = "image/webp"),
            (Vec<u8> = "application/octet-stream"),
        )),
    responses(
        (status = 201, description = "Kept (or already kept: the id is the sha256 of the clean PNG).", body = PictureUploaded,
            headers(("Location" = String, description = "The clean PNG's URL."))),
        (status = 400, description = "The body broke off before its end (`unreadable_body`).", body = ErrorBody),
        (status = 413, description = "The file is larger than 25 MiB (`file_too_large`); `error.field` is `picture` or `mask`.", body = ErrorBody),
        (status = 415, description = "Not a PNG, JPEG or WebP (`not_a_picture`, `unsupported_picture_format`), or not sent as a file's bytes (`unsupported_media_type`).", body = ErrorBody),
        (status = 422, description = "An animated, unreadable or cut-off file, one too large to decode or too small, a mask without transparency or larger than 1024 pixels a side, or a wrong `kind` (`animated_picture`, `unreadable_picture`, `picture_too_large`, `picture_too_small`, `mask_without_alpha`, `mask_without_transparency`, `mask_too_large`, `invalid_field`).", body = ErrorBody),
        (status = 503, description = "The studio cannot write its data (`storage_unavailable`).", body = ErrorBody),
        (status = 507, description = "The disk is full (`disk_full`).", body = ErrorBody),
    ))]
pub(super) async fn upload(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let kind = kind_of(request.uri().query())?;
    let field = Field::of_upload(kind).name();
    let refused = |problem| ApiError::Upload { field, problem };
    if !is_a_file(request.headers()) {
        return Err(refused(UploadProblem::WrongContentType));
    }
    // A body announced as too large is refused before any of it is read.
    if announced_length(request.headers()).is_some_and(|length| length > MAX_PICTURE_BYTES as u64) {
        return Err(refused(UploadProblem::TooLarge));
    }
    // Bodies are read a few at a time: the others wait, their bytes left in the network's buffers.
    let _turn = state.pictures.reading_turn().await?;
    let bytes = Bytes::from_request(request, &()).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            refused(UploadProblem::TooLarge)
        } else {
            ApiError::BadRequest {
                code: "unreadable_body",
                message: (text().unreadable_body)(&rejection.body_text()),
                field: Some(field.to_owned()),
            }
        }
    })?;
    let stored = state.pictures.upload(bytes, kind).await?;
    let answer = PictureUploaded::from(stored);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, paths::picture(&answer.id))],
        Json(answer),
    )
        .into_response())
}

#[utoipa::path(get, path = "/api/pictures/{id}", tag = "pictures",
    params(("id" = String, Path, description = "A picture's or mask's id (64 lowercase hexadecimal digits).")),
    responses(
        (status = 200, description = "The clean PNG, cacheable forever.", content_type = "image/png"),
        (status = 404, description = "No such picture (`not_found`).", body = ErrorBody),
    ))]
pub(super) async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::NotFound(text().pictures.unknown);
    let id = PictureId::parse(&id).ok_or_else(not_found)?;
    let png = state
        .pictures
        .read(id)
        .await
        .map_err(ApiError::Storage)?
        .ok_or_else(not_found)?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png".to_owned()),
            // An id is the hash of the bytes: they never change.
            (
                header::CACHE_CONTROL,
                "private, max-age=31536000, immutable".to_owned(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"picture-{id}.png\""),
            ),
        ],
        png,
    )
        .into_response())
}

/// `?kind=picture|mask`; other parameters are ignored.
fn kind_of(query: Option<&str>) -> Result<PictureKind, ApiError> {
    let mut kind = PictureKind::Picture;
    for pair in query.unwrap_or_default().split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name != "kind" {
            continue;
        }
        kind = match value {
            "picture" => PictureKind::Picture,
            "mask" => PictureKind::Mask,
            _ => {
                return Err(ApiError::InvalidField {
                    field: Some("kind".to_owned()),
                    message: text().pictures.kind_values.to_owned(),
                });
            }
        };
    }
    Ok(kind)
}

/// A file's bytes come as `image/*` or `application/octet-stream`. Neither is a type a page of another
/// site can send without the browser asking the studio first, unlike a form (`multipart/form-data`,
/// `application/x-www-form-urlencoded`, `text/plain`).
fn is_a_file(headers: &HeaderMap) -> bool {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase());
    essence.is_some_and(|essence| {
        essence == "application/octet-stream"
            || essence
                .strip_prefix("image/")
                .is_some_and(|subtype| !subtype.is_empty())
    })
}

fn announced_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn only_file_types_are_taken() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            is_a_file(&headers)
        };
        assert!(with("image/jpeg"));
        assert!(with("Image/PNG"));
        assert!(with("application/octet-stream"));
        assert!(with("image/heic"));
        assert!(!with("multipart/form-data; boundary=x"));
        assert!(!with("application/x-www-form-urlencoded"));
        assert!(!with("text/plain"));
        assert!(!with("image/"));
        assert!(!is_a_file(&HeaderMap::new()));
    }

    #[test]
    fn the_kind_comes_from_the_query() {
        assert_eq!(kind_of(None).unwrap(), PictureKind::Picture);
        assert_eq!(kind_of(Some("kind=mask")).unwrap(), PictureKind::Mask);
        assert_eq!(kind_of(Some("x=1&kind=picture")).unwrap(), PictureKind::Picture);
        assert!(kind_of(Some("kind=../../x")).is_err());
    }
}
