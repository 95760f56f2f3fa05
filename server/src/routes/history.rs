//! `GET /api/history` (newest first, paged with `before`) and `DELETE /api/history/{id}`.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use zimage_contract::{self as api, ErrorBody, HistoryPage};

use super::JobIdParam;
use super::language::text;
use super::access::Caller;
use super::error::ApiError;
use crate::job_id::JobId;
use crate::state::AppState;

/// The history routes.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(api::paths::HISTORY, get(list))
        .route("/api/history/{id}", delete(remove))
}

#[utoipa::path(get, path = "/api/history", tag = "images",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Page size; 24 when left out."),
        ("before" = Option<String>, Query, description = "`next_before` of the previous page."),
    ),
    responses(
        (status = 200, description = "Finished images, newest first.", body = HistoryPage),
        (status = 422, description = "`limit` or `before` is not acceptable (`invalid_field`).", body = ErrorBody),
    ))]
pub(super) async fn list(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<HistoryPage>, ApiError> {
    let (limit, before) = parse_query(query.as_deref().unwrap_or(""))?;
    let (records, next) = state.history.page(limit, before);
    Ok(Json(HistoryPage {
        items: records.iter().map(|record| record.item()).collect(),
        next_before: next.map(|id| id.to_string()),
    }))
}

#[utoipa::path(delete, path = "/api/history/{id}", tag = "images", params(("id" = String, Path, description = "The job's id (a UUID), which is also its image's id.")),
    responses(
        (status = 204, description = "Deleted, image and record."),
        (status = 403, description = "Another browser's image (`not_yours`), or the door refused.", body = ErrorBody),
        (status = 404, description = "No such image (`not_found`).", body = ErrorBody),
    ))]
pub(super) async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    JobIdParam(id): JobIdParam,
) -> Result<Response, ApiError> {
    state.jobs.authorize(id, caller.requester)?;
    if !state.history.remove(id).await? {
        return Err(ApiError::NotFound(text().no_such_image));
    }
    state.images.remove(id).await?;
    tracing::info!(%id, "image deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Reads `limit` (1..=100, default 24) and `before` (a job id) from the query string.
fn parse_query(query: &str) -> Result<(usize, Option<JobId>), ApiError> {
    let mut limit = api::DEFAULT_HISTORY_LIMIT;
    let mut before = None;
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|limit| (1..=api::MAX_HISTORY_LIMIT).contains(limit))
                    .ok_or_else(|| ApiError::InvalidField {
                        field: Some("limit".to_owned()),
                        message: (text().history_limit)(api::MAX_HISTORY_LIMIT),
                    })?;
            }
            "before" => {
                before = Some(value.parse::<JobId>().map_err(|_| ApiError::InvalidField {
                    field: Some("before".to_owned()),
                    message: text().history_before.to_owned(),
                })?);
            }
            // Unknown parameters (cache busters and the like) are harmless.
            _ => {}
        }
    }
    Ok((limit, before))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_query_has_defaults_and_bounds() {
        assert_eq!(parse_query("").unwrap(), (api::DEFAULT_HISTORY_LIMIT, None));
        assert_eq!(parse_query("limit=5").unwrap().0, 5);
        for bad in [
            "limit=0",
            "limit=101",
            "limit=-1",
            "limit=x",
            "before=../../etc",
            "before=",
        ] {
            assert!(parse_query(bad).is_err(), "{bad}");
        }
        let id = JobId::new();
        assert_eq!(
            parse_query(&format!("before={id}&_=1")).unwrap(),
            (api::DEFAULT_HISTORY_LIMIT, Some(id))
        );
    }

    proptest! {
        #[test]
        fn a_parsed_query_is_always_within_the_limits(query in any::<String>()) {
            match parse_query(&query) {
                Ok((limit, _)) => prop_assert!((1..=api::MAX_HISTORY_LIMIT).contains(&limit)),
                // A refusal always names the parameter at fault.
                Err(ApiError::InvalidField { field: Some(field), .. }) => {
                    prop_assert!(field == "limit" || field == "before")
                }
                Err(other) => prop_assert!(false, "unexpected refusal {other:?}"),
            }
        }

        #[test]
        fn limits_and_ids_round_trip(limit in 1..=api::MAX_HISTORY_LIMIT, junk in "[a-z]{1,8}") {
            let id = JobId::new();
            let query = format!("{junk}=1&limit={limit}&before={id}");
            let parsed = parse_query(&query);
            if junk == "limit" || junk == "before" {
                // The later value wins; "1" is a limit but not an id.
                prop_assert_eq!(parsed.is_ok(), junk == "limit");
            } else {
                prop_assert_eq!(parsed.unwrap(), (limit, Some(id)));
            }
        }
    }
}
