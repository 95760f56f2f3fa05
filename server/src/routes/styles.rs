//! `GET` and `POST /api/styles`, `PUT` and `DELETE /api/styles/{id}`: the saved styles, shared by every
//! device the door lets in.

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use zimage_contract::styles::paths;
use zimage_contract::{ErrorBody, Style, StyleList, StyleRequest};

use super::error::{ApiError, ApiJson};
use crate::state::AppState;
use crate::styles::{StyleError, StyleId, StyleSettings};

/// The style routes.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(paths::STYLES, get(list).post(create))
        .route("/api/styles/{id}", put(update).delete(remove))
}

/// A style id from the path; anything else is no style.
pub(super) struct StyleIdParam(StyleId);

impl<S: Send + Sync> FromRequestParts<S> for StyleIdParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<StyleIdParam, ApiError> {
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| StyleError::NotFound)?;
        Ok(StyleIdParam(text.parse()?))
    }
}

#[utoipa::path(get, path = "/api/styles", tag = "styles",
    responses((status = 200, description = "Every saved style, sorted by name.", body = StyleList)))]
pub(super) async fn list(State(state): State<AppState>) -> Result<Response, ApiError> {
    let styles = state.styles.list().await?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(StyleList { styles })).into_response())
}

#[utoipa::path(post, path = "/api/styles", tag = "styles", request_body = StyleRequest,
    responses(
        (status = 201, description = "Kept.", body = Style,
            headers(("Location" = String, description = "The style's URL."))),
        (status = 400, description = "Not JSON (`malformed_json`) or not sent as JSON (`unsupported_media_type`).", body = ErrorBody),
        (status = 409, description = "Another style has this name, whatever the case of its letters (`style_taken`, field `name`), or 200 styles are kept already (`too_many_styles`).", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB (`body_too_large`).", body = ErrorBody),
        (status = 422, description = "A field broke a rule (`invalid_field`); `error.field` names it (`name`, `prompt_before`, `loras[0].strength`...).", body = ErrorBody),
    ))]
pub(super) async fn create(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<StyleRequest>,
) -> Result<Response, ApiError> {
    let style = state.styles.create(StyleSettings::try_from(request)?).await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, paths::style(&style.id))],
        Json(style),
    )
        .into_response())
}

#[utoipa::path(put, path = "/api/styles/{id}", tag = "styles", request_body = StyleRequest,
    params(("id" = String, Path, description = "The style's id (a UUID).")),
    responses(
        (status = 200, description = "Saved: the style's settings replaced, its name included.", body = Style),
        (status = 400, description = "Not JSON (`malformed_json`) or not sent as JSON (`unsupported_media_type`).", body = ErrorBody),
        (status = 404, description = "No such style (`not_found`).", body = ErrorBody),
        (status = 409, description = "Another style has this name (`style_taken`, field `name`).", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB (`body_too_large`).", body = ErrorBody),
        (status = 422, description = "A field broke a rule (`invalid_field`); `error.field` names it.", body = ErrorBody),
    ))]
pub(super) async fn update(
    State(state): State<AppState>,
    StyleIdParam(id): StyleIdParam,
    ApiJson(request): ApiJson<StyleRequest>,
) -> Result<Json<Style>, ApiError> {
    let settings = StyleSettings::try_from(request)?;
    Ok(Json(state.styles.update(id, settings).await?))
}

#[utoipa::path(delete, path = "/api/styles/{id}", tag = "styles",
    params(("id" = String, Path, description = "The style's id (a UUID).")),
    responses(
        (status = 204, description = "Deleted. Jobs already accepted with it keep what it made of them."),
        (status = 404, description = "No such style (`not_found`).", body = ErrorBody),
    ))]
pub(super) async fn remove(
    State(state): State<AppState>,
    StyleIdParam(id): StyleIdParam,
) -> Result<Response, ApiError> {
    state.styles.delete(id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
