//! The one place where errors become HTTP answers: every failure turns into a status code and the
//! JSON body `{"error": {"code", "message", "field"}}` that the UI shows next to the field it names.
//! The `message` is in the request's language (`language.rs`, `crate::i18n`); `code` and `field` are
//! the same in every language.
//! Also home of [`ApiJson`], our JSON extractor, so malformed bodies get the same shape, and of
//! [`openai_dialect`], which gives every error under `/v1` OpenAI's shape instead.

use std::time::Duration;

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use zimage_contract::openai::{OpenAiError, OpenAiErrorBody, OpenAiErrorType};
use zimage_contract::{ErrorBody, ErrorDetail, MAX_BODY_BYTES};

use super::language::text;
use crate::access::headers::{HeadTooLarge, MAX_HEADER_BYTES, MAX_HEADER_COUNT, MAX_URI_BYTES};
use crate::access::rate::retry_after_seconds;
use crate::history::HistoryError;
use crate::images::ImageError;
use crate::jobs::JobError;
use crate::openai::GenerateError;
use crate::openai::edit::{EditError, EditRefusal};
use crate::pictures::{PictureError, Refusal};
use crate::styles::StyleError;
use crate::validation::ValidationError;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Validation(#[from] ValidationError),
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        message: String,
        field: Option<String>,
    },
    #[error("{message}")]
    InvalidField { field: Option<String>, message: String },
    #[error("the request body is larger than {MAX_BODY_BYTES} bytes")]
    BodyTooLarge,
    /// The body did not arrive in time (`deadline.rs`).
    #[error("the request's body did not arrive in time")]
    BodyTimeout,
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(&'static str),
    /// ComfyUI cannot take jobs now (not reachable, or a node pack or model file is missing).
    #[error("{message}")]
    NotReady { code: &'static str, message: String },
    /// The studio is shutting down (it is back in a moment).
    #[error("the studio is restarting")]
    ShuttingDown,
    /// The studio cannot write to its data folder.
    #[error("cannot write to the data folder")]
    Storage(#[source] std::io::Error),
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The door refused: wrong network, wrong host, another site, or another browser's job.
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// Sign in first (answered with `WWW-Authenticate`).
    #[error("{message}")]
    Unauthorized { code: &'static str, message: String },
    /// A limit was reached; `retry_after` goes to the `Retry-After` header.
    #[error("{message}")]
    TooManyRequests {
        code: &'static str,
        message: String,
        retry_after: Duration,
    },
    #[error(transparent)]
    HeadTooLarge(#[from] HeadTooLarge),
    /// A job the request waited for failed (`code` and `message` as its `failed` event says).
    #[error("{message}")]
    JobFailed { code: String, message: String },
    /// A job the request waited for was cancelled by someone else.
    #[error("the job was cancelled")]
    JobCancelled,
    /// A picture, a mask or a job's source was refused, or could not be kept.
    #[error(transparent)]
    Picture(#[from] PictureError),
    /// An upload's body is not what `POST /api/pictures` takes; `field` is `picture` or `mask`.
    #[error("the upload's body was refused: {problem:?}")]
    Upload {
        field: &'static str,
        problem: UploadProblem,
    },
    /// The pictures or the form of `POST /v1/images/edits` were refused, naming OpenAI's `param`.
    #[error(transparent)]
    Edit(#[from] EditError),
    /// A style was refused, or is not there (`crate::styles`).
    #[error(transparent)]
    Style(#[from] StyleError),
    /// Our bug; the message goes to the log only.
    #[error("{0}")]
    Internal(String),
}

/// What is wrong with an upload's body itself, before its bytes are looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadProblem {
    /// Larger than [`zimage_contract::pictures::MAX_PICTURE_BYTES`].
    TooLarge,
    /// Sent as a form or text (which another site's page could send without asking) rather than as
    /// a picture's bytes.
    WrongContentType,
}

impl From<JobError> for ApiError {
    fn from(error: JobError) -> ApiError {
        match error {
            JobError::NotFound => ApiError::NotFound(text().no_such_job),
            JobError::AlreadyEnded => ApiError::Conflict(text().job_ended),
            JobError::AlreadySaving => ApiError::Conflict(text().already_saving),
            JobError::ShuttingDown => ApiError::ShuttingDown,
            JobError::Journal(error) => ApiError::Storage(error),
            JobError::QueueFull {
                unfinished,
                retry_after,
            } => ApiError::TooManyRequests {
                code: "queue_full",
                message: (text().queue_full)(unfinished),
                retry_after,
            },
            JobError::ShareFull { share, retry_after } => ApiError::TooManyRequests {
                code: "queue_full",
                message: (text().share_full)(share),
                retry_after,
            },
            JobError::UnknownLora { field, name } => ApiError::InvalidField {
                field: Some(field.to_owned()),
                message: (text().lora_unknown)(&name),
            },
            JobError::NotYours => ApiError::Forbidden {
                code: "not_yours",
                message: text().not_yours.to_owned(),
            },
        }
    }
}

impl From<GenerateError> for ApiError {
    fn from(error: GenerateError) -> ApiError {
        match error {
            GenerateError::Job(error) => error.into(),
            GenerateError::Failed { code, message } => ApiError::JobFailed { code, message },
            GenerateError::Cancelled => ApiError::JobCancelled,
            GenerateError::Restarting => ApiError::ShuttingDown,
            GenerateError::TimedOut { waited } => ApiError::JobFailed {
                code: "timed_out".to_owned(),
                message: (text().generation_timed_out)(waited.as_secs()),
            },
        }
    }
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, String, Option<String>) {
        let text = text();
        match self {
            ApiError::Validation(error) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                text.rule(error.rule, error.field),
                Some(error.field.to_owned()),
            ),
            ApiError::BadRequest { code, message, field } => {
                (StatusCode::BAD_REQUEST, code, message.clone(), field.clone())
            }
            ApiError::InvalidField { field, message } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                message.clone(),
                field.clone(),
            ),
            ApiError::BodyTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                (text.body_too_large)(MAX_BODY_BYTES),
                None,
            ),
            ApiError::BodyTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                (text.body_timeout)(super::deadline::BODY_TIMEOUT.as_secs()),
                None,
            ),
            ApiError::NotFound(message) => (StatusCode::NOT_FOUND, "not_found", (*message).to_owned(), None),
            ApiError::Conflict(message) => (StatusCode::CONFLICT, "conflict", (*message).to_owned(), None),
            ApiError::NotReady { code, message } => (
                StatusCode::SERVICE_UNAVAILABLE,
                code,
                (text.not_ready)(message),
                None,
            ),
            ApiError::ShuttingDown => (
                StatusCode::SERVICE_UNAVAILABLE,
                "restarting",
                text.restarting.to_owned(),
                None,
            ),
            ApiError::Storage(error) if error.kind() == std::io::ErrorKind::StorageFull => (
                StatusCode::INSUFFICIENT_STORAGE,
                "disk_full",
                text.disk_full.to_owned(),
                None,
            ),
            ApiError::Storage(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                text.storage_unavailable.to_owned(),
                None,
            ),
            // Our own storage failing is our problem: the details go to the log, not to the client.
            ApiError::Forbidden { code, message } => (StatusCode::FORBIDDEN, code, message.clone(), None),
            ApiError::Unauthorized { code, message } => {
                (StatusCode::UNAUTHORIZED, code, message.clone(), None)
            }
            ApiError::TooManyRequests { code, message, .. } => {
                (StatusCode::TOO_MANY_REQUESTS, code, message.clone(), None)
            }
            ApiError::HeadTooLarge(HeadTooLarge::Uri) => (
                StatusCode::URI_TOO_LONG,
                "uri_too_long",
                (text.uri_too_long)(MAX_URI_BYTES),
                None,
            ),
            ApiError::HeadTooLarge(HeadTooLarge::Headers) => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                (text.headers_too_large)(MAX_HEADER_BYTES, MAX_HEADER_COUNT),
                None,
            ),
            ApiError::JobFailed { code, message } => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "generation_failed",
                (text.generation_failed)(code, message),
                None,
            ),
            ApiError::JobCancelled => (
                StatusCode::CONFLICT,
                "cancelled",
                text.generation_cancelled.to_owned(),
                None,
            ),
            ApiError::Picture(PictureError::Refused { field, refusal }) => {
                let (status, code, message) = picture_refusal(refusal);
                (status, code, message, Some(field.name().to_owned()))
            }
            ApiError::Picture(PictureError::Storage(error)) => {
                let storage = ApiError::Storage(std::io::Error::new(error.kind(), error.to_string()));
                storage.parts()
            }
            ApiError::Upload { field, problem } => {
                let pictures = text.pictures;
                let (status, code, message) = match problem {
                    UploadProblem::TooLarge => (
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "file_too_large",
                        (pictures.file_too_large)(
                            zimage_contract::pictures::MAX_PICTURE_BYTES / (1024 * 1024),
                        ),
                    ),
                    UploadProblem::WrongContentType => (
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "unsupported_media_type",
                        pictures.wrong_content_type.to_owned(),
                    ),
                };
                (status, code, message, Some((*field).to_owned()))
            }
            ApiError::Edit(EditError::Refused(refusal)) => {
                let (status, code, message) = edit_refusal(refusal);
                (status, code, message, refusal.param())
            }
            ApiError::Edit(EditError::Picture { param, error }) => {
                let (status, code, message, _) = match error {
                    PictureError::Refused { refusal, .. } => {
                        let (status, code, message) = picture_refusal(refusal);
                        (status, code, message, None)
                    }
                    PictureError::Storage(error) => {
                        ApiError::Storage(std::io::Error::new(error.kind(), error.to_string())).parts()
                    }
                    PictureError::Internal(error) => ApiError::Internal(error.clone()).parts(),
                };
                (status, code, message, Some((*param).to_owned()))
            }
            ApiError::Style(error) => style_refusal(error),
            ApiError::History(_)
            | ApiError::Image(_)
            | ApiError::Picture(PictureError::Internal(_))
            | ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                text.internal.to_owned(),
                None,
            ),
        }
    }
}

/// The status, code and sentence of a refused edit (its form, or its pictures before they are looked
/// at): a file or body too large is 413, the rest 400.
fn edit_refusal(refusal: &EditRefusal) -> (StatusCode, &'static str, String) {
    use zimage_contract::pictures::MAX_PICTURE_BYTES;
    let edits = text().edits;
    let bad = StatusCode::BAD_REQUEST;
    match refusal {
        EditRefusal::NoImage { param } => (bad, "invalid_field", (edits.no_image)(param)),
        EditRefusal::SeveralImages { .. } => (bad, "invalid_field", edits.several_images.to_owned()),
        EditRefusal::SeveralMasks => (bad, "invalid_field", edits.several_masks.to_owned()),
        EditRefusal::RemoteUrl { .. } => (bad, "remote_url", edits.remote_url.to_owned()),
        EditRefusal::FileId { .. } => (bad, "file_id", edits.file_id.to_owned()),
        EditRefusal::NotADataUrl { .. } => (bad, "invalid_field", edits.not_a_data_url.to_owned()),
        EditRefusal::FileTooLarge { .. } => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "file_too_large",
            (text().pictures.file_too_large)(MAX_PICTURE_BYTES / (1024 * 1024)),
        ),
        EditRefusal::TooManyParts(most) => (bad, "too_many_parts", (edits.too_many_parts)(*most)),
        EditRefusal::TextTooLong { limit, .. } => (bad, "invalid_field", (edits.text_too_long)(*limit)),
        EditRefusal::NotText { .. } => (bad, "invalid_field", edits.not_text.to_owned()),
        EditRefusal::Duplicate { .. } => (bad, "invalid_field", edits.duplicate.to_owned()),
        EditRefusal::BodyTooLarge(most) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            (edits.body_too_large)(most / (1024 * 1024)),
        ),
        EditRefusal::UnreadableForm(detail) => (bad, "unreadable_body", (edits.unreadable_form)(detail)),
        EditRefusal::NotFormOrJson => (bad, "unsupported_media_type", edits.form_or_json.to_owned()),
    }
}

/// The status, code, sentence and field of a style's refusal.
fn style_refusal(error: &StyleError) -> (StatusCode, &'static str, String, Option<String>) {
    let styles = text().styles;
    match error {
        StyleError::Invalid { field, rule } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            styles.rule(*rule),
            Some(field.clone()),
        ),
        StyleError::NameTaken => (
            StatusCode::CONFLICT,
            "style_taken",
            styles.name_taken.to_owned(),
            Some("name".to_owned()),
        ),
        StyleError::TooMany => (
            StatusCode::CONFLICT,
            "too_many_styles",
            (styles.too_many)(zimage_contract::styles::MAX_STYLES),
            None,
        ),
        StyleError::NotFound => (
            StatusCode::NOT_FOUND,
            "not_found",
            styles.not_found.to_owned(),
            None,
        ),
        StyleError::Unknown { field, name } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            (styles.unknown)(name),
            Some((*field).to_owned()),
        ),
        // The details go to the log (see `ApiError`'s answer), not to the client.
        StyleError::Storage(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            text().internal.to_owned(),
            None,
        ),
    }
}

/// The status, code and sentence of a refused picture: what the bytes are not is 415, what they hold
/// (or which id or number was given) 422.
fn picture_refusal(refusal: &Refusal) -> (StatusCode, &'static str, String) {
    use zimage_contract::pictures::{
        MAX_DECODED_PIXELS, MAX_DECODED_SIDE, MAX_PICTURE_SIDE, MAX_STRENGTH, MIN_PICTURE_SIDE, MIN_STRENGTH,
    };
    let pictures = text().pictures;
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    match refusal {
        Refusal::NotAPicture => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not_a_picture",
            pictures.not_a_picture.to_owned(),
        ),
        Refusal::Unsupported(format) => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_picture_format",
            (pictures.unsupported_format)(format),
        ),
        Refusal::Animated => (unprocessable, "animated_picture", pictures.animated.to_owned()),
        Refusal::Unreadable(_) => (
            unprocessable,
            "unreadable_picture",
            pictures.unreadable.to_owned(),
        ),
        Refusal::TooLarge => (
            unprocessable,
            "picture_too_large",
            (pictures.too_large)(MAX_DECODED_SIDE, MAX_DECODED_PIXELS / 1_000_000),
        ),
        Refusal::TooSmall { width, height } => (
            unprocessable,
            "picture_too_small",
            (pictures.too_small)(*width, *height, MIN_PICTURE_SIDE),
        ),
        Refusal::MaskWithoutAlpha => (
            unprocessable,
            "mask_without_alpha",
            pictures.mask_without_alpha.to_owned(),
        ),
        Refusal::MaskWithoutTransparency => (
            unprocessable,
            "mask_without_transparency",
            pictures.mask_without_transparency.to_owned(),
        ),
        Refusal::MaskTooLarge { width, height } => (
            unprocessable,
            "mask_too_large",
            (pictures.mask_too_large)(*width, *height, MAX_PICTURE_SIDE),
        ),
        Refusal::Unknown => (unprocessable, "unknown_picture", pictures.unknown.to_owned()),
        Refusal::WrongKind { expected, .. } => (
            unprocessable,
            "wrong_picture_kind",
            match expected {
                zimage_contract::PictureKind::Picture => pictures.is_a_mask,
                zimage_contract::PictureKind::Mask => pictures.is_a_picture,
            }
            .to_owned(),
        ),
        Refusal::MaskSize { mask, picture } => (
            unprocessable,
            "mask_size",
            (pictures.mask_size)(mask.0, mask.1, picture.0, picture.1),
        ),
        Refusal::Strength => (
            unprocessable,
            "invalid_field",
            (pictures.strength_range)(MIN_STRENGTH, MAX_STRENGTH),
        ),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message, field) = self.parts();
        // The one log line of a failed request, with the cause (the trace layer logs no failures):
        // our own faults are errors, an absent or misbehaving ComfyUI is a warning.
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = ?self, "request failed");
        } else if status.is_server_error() {
            tracing::warn!(error = %self, "request failed");
        }
        let detail = ErrorDetail {
            code: code.to_owned(),
            message,
            field,
        };
        let body = ErrorBody {
            error: detail.clone(),
        };
        let mut response = (status, axum::Json(body)).into_response();
        // For `openai_dialect`, which answers the same error in OpenAI's shape under `/v1`.
        response.extensions_mut().insert(detail);
        match &self {
            ApiError::Unauthorized { .. } => {
                let challenge = HeaderValue::from_static("Bearer realm=\"z-image-local\"");
                response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
            }
            ApiError::TooManyRequests { retry_after, .. } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, retry_after_seconds(*retry_after).into());
            }
            ApiError::JobFailed { .. } => {
                // OpenAI's SDKs would otherwise send a failed generation again, twice.
                response
                    .headers_mut()
                    .insert("x-should-retry", HeaderValue::from_static("false"));
            }
            _ => {}
        }
        response
    }
}

/// The layer that speaks OpenAI's dialect under `/v1`: every error answer there, the door's included,
/// becomes `{"error": {"message", "type", "param", "code"}}`, and a refused field (422 elsewhere) or a
/// file that is not a picture (415) is a 400 naming `param`, as OpenAI's SDKs expect. Headers (`Retry-After`, `WWW-Authenticate`) stay.
pub(super) async fn openai_dialect(request: Request, next: Next) -> Response {
    let openai = request.uri().path().starts_with("/v1/");
    let response = next.run(request).await;
    let status = response.status();
    if !openai || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let detail = parts.extensions.remove::<ErrorDetail>();
    // OpenAI answers a refused field, and a file that is not a picture, with 400: its SDKs raise
    // `BadRequestError` for it alone.
    let status = if status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::UNSUPPORTED_MEDIA_TYPE
    {
        StatusCode::BAD_REQUEST
    } else {
        status
    };
    let body = openai_error(status, detail);
    parts.status = status;
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let json = serde_json::to_vec(&body).unwrap_or_default();
    Response::from_parts(parts, axum::body::Body::from(json))
}

/// The OpenAI error for an answer of `status`; `detail` is the studio's own error, when it made one
/// (an answer from elsewhere, such as a timeout or an unknown path, has only its status).
pub(super) fn openai_error(status: StatusCode, detail: Option<ErrorDetail>) -> OpenAiErrorBody {
    let kind = match status {
        StatusCode::UNAUTHORIZED => OpenAiErrorType::AuthenticationError,
        StatusCode::FORBIDDEN => OpenAiErrorType::PermissionError,
        StatusCode::TOO_MANY_REQUESTS => OpenAiErrorType::RateLimitError,
        status if status.is_server_error() && status != StatusCode::INSUFFICIENT_STORAGE => {
            OpenAiErrorType::ServerError
        }
        _ => OpenAiErrorType::InvalidRequestError,
    };
    let error = match detail {
        Some(detail) => OpenAiError {
            message: detail.message,
            kind,
            param: detail.field,
            code: Some(detail.code),
        },
        None => OpenAiError {
            message: match status {
                StatusCode::NOT_FOUND => "There is no such route of the OpenAI-compatible API.".to_owned(),
                StatusCode::METHOD_NOT_ALLOWED => "This route does not take that method.".to_owned(),
                StatusCode::GATEWAY_TIMEOUT => "The studio took too long to answer.".to_owned(),
                status => status.canonical_reason().unwrap_or("Error").to_owned() + ".",
            },
            kind,
            param: None,
            code: None,
        },
    };
    OpenAiErrorBody { error }
}

/// A JSON body parsed into `T`, whose every failure is an [`ApiError`] naming the field at fault.
pub(super) struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<ApiJson<T>, ApiError> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<mime_type::Essence>().ok())
            .is_some_and(|essence| essence.is_json());
        if !is_json {
            return Err(ApiError::BadRequest {
                code: "unsupported_media_type",
                message: text().json_required.to_owned(),
                field: None,
            });
        }
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::BodyTooLarge
                } else if super::deadline::timed_out(&rejection) {
                    ApiError::BodyTimeout
                } else {
                    ApiError::BadRequest {
                        code: "unreadable_body",
                        message: (text().unreadable_body)(&rejection.body_text()),
                        field: None,
                    }
                }
            })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses JSON, naming the field of a type error and telling syntax errors apart (400 vs 422).
pub(super) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let malformed = |error: serde_json::Error| ApiError::BadRequest {
        code: "malformed_json",
        message: (text().malformed_json)(&error.to_string()),
        field: None,
    };
    // Syntax first, so that broken JSON is a 400 whatever its shape.
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(malformed)?;
    // serde would read a struct from an array too (`["x"]` as the prompt): only objects are requests.
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(ApiError::InvalidField {
            field: None,
            message: text().json_object.to_owned(),
        });
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.classify() != serde_json::error::Category::Data {
            return malformed(inner);
        }
        let message = inner.to_string();
        // The root has the path "."; a type error there belongs to no single field.
        let field = field_named_in(&message)
            .map(str::to_owned)
            .or((path != ".").then_some(path));
        ApiError::InvalidField {
            field,
            message: (text().invalid_field)(&sentence(&message)),
        }
    })?;
    deserializer.end().map_err(malformed)?;
    Ok(value)
}

/// serde names unknown, duplicated and missing fields in backticks ("unknown field `x`"); the error's
/// path then points at the enclosing object, so the name in the message is the better field.
fn field_named_in(message: &str) -> Option<&str> {
    let named = ["unknown field `", "duplicate field `", "missing field `"];
    named.iter().find_map(|prefix| {
        let start = message.find(prefix)? + prefix.len();
        let length = message[start..].find('`')?;
        Some(&message[start..start + length])
    })
}

fn sentence(message: &str) -> String {
    let trimmed = message.split(" at line ").next().unwrap_or(message);
    let mut characters = trimmed.chars();
    match characters.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), characters.as_str()),
        None => String::new(),
    }
}

/// Just enough media-type parsing to accept `application/json; charset=utf-8` and `application/*+json`.
mod mime_type {
    pub(super) struct Essence(String);

    impl std::str::FromStr for Essence {
        type Err = ();
        fn from_str(value: &str) -> Result<Essence, ()> {
            let essence = value.split(';').next().ok_or(())?.trim().to_ascii_lowercase();
            Ok(Essence(essence))
        }
    }

    impl Essence {
        pub(super) fn is_json(&self) -> bool {
            self.0 == "application/json" || (self.0.starts_with("application/") && self.0.ends_with("+json"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zimage_contract::CreateJobRequest;

    fn field_of(json: &str) -> (StatusCode, Option<String>) {
        let error = parse_json::<CreateJobRequest>(json.as_bytes()).err().unwrap();
        let (status, _, _, field) = error.parts();
        (status, field)
    }

    #[test]
    fn type_errors_name_their_field() {
        assert_eq!(
            field_of(r#"{"prompt": "x", "seed": "seven"}"#),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("seed".to_owned()))
        );
        assert_eq!(
            field_of(r#"{"prompt": "x", "seed": -1}"#),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("seed".to_owned()))
        );
        assert_eq!(
            field_of(r#"{"prompt": "x", "aspect_ratio": "2:1"}"#),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("aspect_ratio".to_owned()))
        );
        assert_eq!(
            field_of(r#"{"prompt": 5}"#),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("prompt".to_owned()))
        );
    }

    #[test]
    fn unknown_duplicated_and_missing_fields_are_named() {
        assert_eq!(
            field_of(r#"{"prompt": "x", "steps": 50}"#),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("steps".to_owned()))
        );
        assert_eq!(
            field_of(r#"{"prompt": "x", "prompt": "y"}"#),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("prompt".to_owned()))
        );
        assert_eq!(
            field_of(r#"{"seed": 1}"#),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("prompt".to_owned()))
        );
    }

    #[test]
    fn syntax_errors_are_bad_requests_without_a_field() {
        for body in ["{", "", "not json", "{\"prompt\": \"x\"} trailing", "[1,2]x"] {
            let error = parse_json::<CreateJobRequest>(body.as_bytes()).err().unwrap();
            let (status, _, _, field) = error.parts();
            assert_eq!((status, field), (StatusCode::BAD_REQUEST, None), "{body}");
        }
    }

    #[test]
    fn json_media_types_are_recognised() {
        let is_json = |value: &str| value.parse::<mime_type::Essence>().unwrap().is_json();
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
    }
}
