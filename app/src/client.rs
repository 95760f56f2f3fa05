//! The browser's side of the HTTP contract: typed calls to the gateway's JSON API, and the errors a
//! person reads when one fails.
//!
//! Every answer is decoded here, so no status code or raw body ever reaches the page.

use serde::de::DeserializeOwned;

use crate::api::{
    CreateJobRequest, ErrorBody, ErrorDetail, HistoryItem, HistoryPage, HistoryPatch, JobAccepted, JobView,
    PictureKind, Readiness, paths,
};
use crate::browser;
use crate::form::FormError;
use crate::i18n::Ui;

/// Why a call to the gateway failed; [`ClientError::message`] words it for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The gateway answered with an error; `detail.message` is written for people, in the language the
    /// page asked for (the gateway follows the same cookie and `Accept-Language`).
    Api { status: u16, detail: ErrorDetail },
    /// An error status without the gateway's JSON (a proxy in the way, or a crash).
    Status(u16),
    /// No answer at all: the network or the gateway is down.
    Network,
    /// An answer this page cannot read (an old page after an upgrade, or a proxy in the way).
    Unexpected,
}

impl ClientError {
    /// The sentence people read.
    pub fn message(&self, ui: &Ui) -> String {
        match self {
            ClientError::Api { detail, .. } => detail.message.clone(),
            // Said in words, never as a bare number.
            ClientError::Status(status) if *status >= 500 => ui.server_trouble.to_owned(),
            ClientError::Status(_) => ui.request_refused.to_owned(),
            ClientError::Network => ui.network_error.to_owned(),
            ClientError::Unexpected => ui.unexpected_answer.to_owned(),
        }
    }

    /// The error as the form shows it, beside the field the gateway named.
    pub fn to_form_error(&self, ui: &Ui) -> FormError {
        match self {
            ClientError::Api { detail, .. } => FormError::from_detail(detail),
            other => FormError {
                field: None,
                message: other.message(ui),
            },
        }
    }

    /// True when the gateway wants this browser to sign in (401: an access secret is set and the
    /// session expired or was signed out).
    pub fn needs_sign_in(&self) -> bool {
        self.status() == Some(401)
    }

    /// True when the gateway says the thing asked about does not exist (404).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } | ClientError::Status(status) => Some(*status),
            ClientError::Network | ClientError::Unexpected => None,
        }
    }
}

/// `POST /api/jobs`.
pub async fn create_job(request: &CreateJobRequest) -> Result<JobAccepted, ClientError> {
    let body = serde_json::to_string(request).map_err(|_| ClientError::Unexpected)?;
    let (status, text) = browser::fetch_text("POST", paths::JOBS, Some(body)).await?;
    decode(status, &text)
}

/// `GET /api/jobs/{id}`.
pub async fn get_job(id: &str) -> Result<JobView, ClientError> {
    let (status, text) = browser::fetch_text("GET", &paths::job(id), None).await?;
    decode(status, &text)
}

/// `DELETE /api/jobs/{id}`: cancel.
pub async fn cancel_job(id: &str) -> Result<(), ClientError> {
    let (status, text) = browser::fetch_text("DELETE", &paths::job(id), None).await?;
    expect_success(status, &text)
}

/// One page of `GET /api/history`, by the URL [`crate::history::Gallery`] made.
pub async fn history_page(url: &str) -> Result<HistoryPage, ClientError> {
    let (status, text) = browser::fetch_text("GET", url, None).await?;
    decode(status, &text)
}

/// `DELETE /api/history/{id}`.
pub async fn delete_history_item(id: &str) -> Result<(), ClientError> {
    let (status, text) = browser::fetch_text("DELETE", &paths::history_item(id), None).await?;
    expect_success(status, &text)
}

/// `PATCH /api/history/{id}`: star or unstar.
pub async fn star_history_item(id: &str, starred: bool) -> Result<HistoryItem, ClientError> {
    let body = serde_json::to_string(&HistoryPatch { starred }).map_err(|_| ClientError::Unexpected)?;
    let (status, text) = browser::fetch_text("PATCH", &paths::history_item(id), Some(body)).await?;
    decode(status, &text)
}

/// `POST /api/pictures[?kind=mask]`: the file's bytes as they are; the gateway reads, checks and cleans
/// them and answers with the clean picture's id and size.
pub async fn upload_picture(file: &browser::Blob, kind: PictureKind) -> Result<Uploaded, ClientError> {
    let url = picture_upload_url(kind);
    let (status, text) = browser::post_blob(&url, file).await?;
    decode(status, &text)
}

/// The part of [`crate::api::PictureUploaded`] the page uses (its `kind` is the one asked for): read
/// without decoding `kind`, whose decoder would be bundle bytes for nothing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Uploaded {
    pub id: String,
    pub width: u32,
    pub height: u32,
}

fn picture_upload_url(kind: PictureKind) -> String {
    let path = crate::api::pictures::paths::PICTURES;
    match kind {
        PictureKind::Picture => path.to_owned(),
        PictureKind::Mask => format!("{path}?kind=mask"),
    }
}

/// `GET /api/loras`: every LoRA some backend has. A studio without the route (404) has none.
pub async fn loras() -> Result<Vec<crate::api::LoraInfo>, ClientError> {
    let (status, text) = browser::fetch_text("GET", crate::api::styles::paths::LORAS, None).await?;
    if status == 404 {
        return Ok(Vec::new());
    }
    decode::<crate::api::LoraList>(status, &text).map(|list| list.loras)
}

/// `GET /api/styles`.
pub async fn styles() -> Result<Vec<crate::api::Style>, ClientError> {
    let (status, text) = browser::fetch_text("GET", crate::api::styles::paths::STYLES, None).await?;
    decode::<crate::api::StyleList>(status, &text).map(|list| list.styles)
}

/// `POST /api/styles` (a new style) or `PUT /api/styles/{id}` (a style saved again, or renamed).
pub async fn save_style(
    id: Option<&str>,
    request: &crate::api::StyleRequest,
) -> Result<crate::api::Style, ClientError> {
    let body = serde_json::to_string(request).map_err(|_| ClientError::Unexpected)?;
    let (status, text) = match id {
        Some(id) => browser::fetch_text("PUT", &crate::api::styles::paths::style(id), Some(body)).await?,
        None => browser::fetch_text("POST", crate::api::styles::paths::STYLES, Some(body)).await?,
    };
    decode(status, &text)
}

/// `DELETE /api/styles/{id}`.
pub async fn delete_style(id: &str) -> Result<(), ClientError> {
    let (status, text) = browser::fetch_text("DELETE", &crate::api::styles::paths::style(id), None).await?;
    expect_success(status, &text)
}

/// `GET /readyz`, whose body is a [`Readiness`] whether the answer is 200 or 503.
pub async fn readiness() -> Result<Readiness, ClientError> {
    let (status, text) = browser::fetch_text("GET", paths::READYZ, None).await?;
    if status == 401 {
        expect_success(status, &text)?;
    }
    serde_json::from_str(&text).map_err(|_| ClientError::Unexpected)
}

/// Reads a JSON answer: the body on success, the gateway's error otherwise.
fn decode<T: DeserializeOwned>(status: u16, text: &str) -> Result<T, ClientError> {
    expect_success(status, text)?;
    serde_json::from_str(text).map_err(|_| ClientError::Unexpected)
}

fn expect_success(status: u16, text: &str) -> Result<(), ClientError> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    match serde_json::from_str::<ErrorBody>(text) {
        Ok(body) => Err(ClientError::Api {
            status,
            detail: body.error,
        }),
        Err(_) => Err(ClientError::Status(status)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::form::Field;
    use crate::i18n::{EN, ZH_CN};

    #[test]
    fn a_success_decodes_the_body() {
        let accepted: JobAccepted = decode(
            202,
            r#"{"id":"j","seed":5,"width":1024,"height":576,"status":"queued"}"#,
        )
        .unwrap();
        assert_eq!((accepted.id.as_str(), accepted.seed), ("j", 5));
    }

    #[test]
    fn a_gateway_error_keeps_its_message_and_field() {
        let body =
            r#"{"error":{"code":"invalid_prompt","message":"Write a prompt first.","field":"prompt"}}"#;
        let error = decode::<JobAccepted>(422, body).unwrap_err();
        assert_eq!(error.message(&EN), "Write a prompt first.");
        let form_error = error.to_form_error(&ZH_CN);
        assert_eq!(form_error.field, Some(Field::Prompt));
        assert_eq!(form_error.message, "Write a prompt first.");
    }

    #[test]
    fn an_error_without_the_gateways_json_is_still_words_without_a_status_code() {
        for status in [400_u16, 404, 500, 502, 504] {
            let error = decode::<JobAccepted>(status, "<html>Bad Gateway</html>").unwrap_err();
            let message = error.message(&EN);
            assert!(!message.contains(&status.to_string()), "{message}");
            assert!(message.starts_with("The studio"), "{message}");
            assert!(error.message(&ZH_CN).starts_with("工作室"));
        }
    }

    #[test]
    fn a_success_with_an_unreadable_body_is_unexpected() {
        assert_eq!(
            decode::<JobAccepted>(200, "{}").unwrap_err(),
            ClientError::Unexpected
        );
    }

    #[test]
    fn a_401_asks_for_signing_in_and_nothing_else_does() {
        let body = r#"{"error":{"code":"sign_in_required","message":"Sign in first."}}"#;
        assert!(decode::<JobView>(401, body).unwrap_err().needs_sign_in());
        assert!(!decode::<JobView>(403, body).unwrap_err().needs_sign_in());
        assert!(!ClientError::Network.needs_sign_in());
    }

    #[test]
    fn pictures_and_masks_go_to_the_pinned_paths_and_their_answer_decodes() {
        assert_eq!(picture_upload_url(PictureKind::Picture), "/api/pictures");
        assert_eq!(picture_upload_url(PictureKind::Mask), "/api/pictures?kind=mask");
        let id = "0f".repeat(32);
        let answer = crate::api::PictureUploaded {
            id: id.clone(),
            width: 1024,
            height: 768,
            kind: PictureKind::Picture,
        };
        let uploaded: Uploaded = decode(201, &serde_json::to_string(&answer).unwrap()).unwrap();
        assert_eq!((uploaded.id, uploaded.width, uploaded.height), (id, 1024, 768));
        let body =
            r#"{"error":{"code":"too_large","message":"The picture is too large.","field":"picture"}}"#;
        let error = decode::<Uploaded>(413, body).unwrap_err();
        assert_eq!(error.to_form_error(&EN).field, Some(Field::Source));
    }

    #[test]
    fn not_found_is_recognised() {
        let body = r#"{"error":{"code":"not_found","message":"No such job."}}"#;
        assert!(decode::<JobView>(404, body).unwrap_err().is_not_found());
        assert!(!ClientError::Network.is_not_found());
    }
}
