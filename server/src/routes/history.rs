//! `GET /api/history` (newest first, paged with `before`, searched with `q`, filtered with
//! `starred=true`), `PATCH /api/history/{id}` (star or unstar) and `DELETE /api/history/{id}`.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use zimage_contract::{self as api, ErrorBody, HistoryItem, HistoryPage, HistoryPatch};

use super::JobIdParam;
use super::access::Caller;
use super::error::{ApiError, ApiJson};
use super::language::text;
use crate::history::{Filter, MAX_QUERY_CHARS, MAX_QUERY_TERMS, SearchText, SearchTextError};
use crate::job_id::JobId;
use crate::state::AppState;

/// The history routes.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(api::paths::HISTORY, get(list))
        .route("/api/history/{id}", axum::routing::patch(star).delete(remove))
}

#[utoipa::path(get, path = "/api/history", tag = "images",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Page size; 24 when left out."),
        ("before" = Option<String>, Query, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
            description = "`next_before` of the previous page: an image's id (a UUID)."),
        ("q" = Option<String>, Query, max_length = 200, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$", description = "Words of the prompt or of the name of a LoRA it used (any substring of three or more characters, Chinese included), or a seed."),
        ("starred" = Option<bool>, Query, description = "`true`: only starred images."),
    ),
    responses(
        (status = 200, description = "Finished images, newest first.", body = HistoryPage),
        (status = 422, description = "`limit`, `before`, `q` or `starred` is not acceptable (`invalid_field`).", body = ErrorBody),
    ))]
pub(super) async fn list(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<HistoryPage>, ApiError> {
    let query = parse_query(query.as_deref().unwrap_or(""))?;
    let (entries, next) = state
        .history
        .search(query.filter, query.limit, query.before)
        .await?;
    Ok(Json(HistoryPage {
        items: entries.iter().map(|entry| entry.item()).collect(),
        next_before: next.map(|id| id.to_string()),
    }))
}

/// Stars or unstars an image. The gallery is shared: any device the door let in may.
#[utoipa::path(patch, path = "/api/history/{id}", tag = "images", params(("id" = String, Path, description = "The image's id.")),
    request_body = HistoryPatch,
    responses(
        (status = 200, description = "The image, starred or not.", body = HistoryItem),
        (status = 400, description = "The body is not JSON (`unsupported_media_type`, `malformed_json`, `unreadable_body`).", body = ErrorBody),
        (status = 404, description = "No such image (`not_found`).", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB (`body_too_large`).", body = ErrorBody),
        (status = 422, description = "`starred` is missing or not a boolean, or another field is there (`invalid_field`).", body = ErrorBody),
    ))]
pub(super) async fn star(
    State(state): State<AppState>,
    JobIdParam(id): JobIdParam,
    ApiJson(patch): ApiJson<HistoryPatch>,
) -> Result<Json<HistoryItem>, ApiError> {
    if !state.history.set_starred(id, patch.starred).await? {
        return Err(ApiError::NotFound(text().no_such_image));
    }
    let entry = state
        .history
        .entry(id)
        .ok_or(ApiError::NotFound(text().no_such_image))?;
    tracing::info!(%id, starred = patch.starred, "image starred");
    Ok(Json(entry.item()))
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
    state.jobs.authorize(id, caller.requester).await?;
    if !state.history.remove(id).await? {
        return Err(ApiError::NotFound(text().no_such_image));
    }
    state.images.remove(id).await?;
    tracing::info!(%id, "image deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A parsed `GET /api/history` query.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HistoryQuery {
    limit: usize,
    before: Option<JobId>,
    filter: Filter,
}

/// Reads `limit` (1..=100, default 24), `before` (a job id), `q` (the search text) and `starred`
/// (`true` or `false`) from the query string.
fn parse_query(query: &str) -> Result<HistoryQuery, ApiError> {
    let mut limit = api::DEFAULT_HISTORY_LIMIT;
    let mut before = None;
    let mut filter = Filter::default();
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
            "q" => {
                filter.text = SearchText::parse(&value).map_err(|error| ApiError::InvalidField {
                    field: Some("q".to_owned()),
                    message: match error {
                        SearchTextError::TooLong => (text().search_too_long)(MAX_QUERY_CHARS),
                        SearchTextError::TooManyTerms => (text().search_too_many_words)(MAX_QUERY_TERMS),
                        SearchTextError::ControlCharacter => (text().query_control)("q"),
                    },
                })?;
            }
            "starred" => {
                filter.starred_only = match value.as_ref() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(ApiError::InvalidField {
                            field: Some("starred".to_owned()),
                            message: text().starred_bool.to_owned(),
                        });
                    }
                };
            }
            // Unknown parameters (cache busters and the like) are harmless.
            _ => {}
        }
    }
    Ok(HistoryQuery {
        limit,
        before,
        filter,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limit_and_before(query: &str) -> Result<(usize, Option<JobId>), ApiError> {
        parse_query(query).map(|query| (query.limit, query.before))
    }

    #[test]
    fn the_query_has_defaults_and_bounds() {
        assert_eq!(limit_and_before("").unwrap(), (api::DEFAULT_HISTORY_LIMIT, None));
        assert_eq!(parse_query("").unwrap().filter, Filter::default());
        assert_eq!(limit_and_before("limit=5").unwrap().0, 5);
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
            limit_and_before(&format!("before={id}&_=1")).unwrap(),
            (api::DEFAULT_HISTORY_LIMIT, Some(id))
        );
    }

    #[test]
    fn the_search_and_the_star_filter_are_typed_and_name_their_field() {
        let query = parse_query("q=%E7%8B%90%E7%8B%B8+red&starred=true").unwrap();
        assert_eq!(query.filter.text.unwrap().terms(), ["狐狸", "red"]);
        assert!(query.filter.starred_only);
        assert_eq!(
            parse_query("q=+&starred=false").unwrap().filter,
            Filter::default()
        );
        let field = |query: &str| match parse_query(query) {
            Err(ApiError::InvalidField { field, .. }) => field,
            other => panic!("{query}: {other:?}"),
        };
        assert_eq!(field("starred=yes"), Some("starred".to_owned()));
        assert_eq!(field("starred="), Some("starred".to_owned()));
        assert_eq!(field(&format!("q={}", "x".repeat(201))), Some("q".to_owned()));
    }

    proptest! {
        #[test]
        fn a_parsed_query_is_always_within_the_limits(query in any::<String>()) {
            match parse_query(&query) {
                Ok(query) => prop_assert!((1..=api::MAX_HISTORY_LIMIT).contains(&query.limit)),
                // A refusal always names the parameter at fault.
                Err(ApiError::InvalidField { field: Some(field), .. }) => {
                    prop_assert!(["limit", "before", "q", "starred"].contains(&field.as_str()))
                }
                Err(other) => prop_assert!(false, "unexpected refusal {other:?}"),
            }
        }

        #[test]
        fn limits_and_ids_round_trip(limit in 1..=api::MAX_HISTORY_LIMIT, junk in "[a-z]{1,8}") {
            let id = JobId::new();
            let query = format!("{junk}=1&limit={limit}&before={id}");
            let parsed = limit_and_before(&query);
            if junk == "limit" || junk == "before" || junk == "starred" {
                // The later value wins; "1" is a limit but not an id, nor true or false.
                prop_assert_eq!(parsed.is_ok(), junk == "limit");
            } else {
                prop_assert_eq!(parsed.unwrap(), (limit, Some(id)));
            }
        }
    }
}
