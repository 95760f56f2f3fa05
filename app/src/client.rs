//! The browser's side of the HTTP contract: typed calls to the gateway's JSON API, and the errors a
//! person reads when one fails.
//!
//! Every answer is decoded here, so no status code or raw body ever reaches the page.

use serde::de::DeserializeOwned;

use crate::api::{
    CreateJobRequest, ErrorBody, ErrorDetail, HistoryItem, HistoryPage, HistoryPatch, JobAccepted, JobView,
    Readiness, paths,
};
use crate::browser;
use crate::form::FormError;

/// Why a call to the gateway failed, worded for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The gateway answered with an error; `detail.message` is written for people.
    #[error("{}", .detail.message)]
    Api { status: u16, detail: ErrorDetail },
    /// No answer at all: the network or the gateway is down.
    #[error("The studio could not be reached. Check the connection and try again.")]
    Network,
    /// An answer this page cannot read (an old page after an upgrade, or a proxy in the way).
    #[error("The studio answered in a way this page does not understand. Reload the page.")]
    Unexpected,
}

impl ClientError {
    /// The error as the form shows it, beside the field the gateway named.
    pub fn to_form_error(&self) -> FormError {
        match self {
            ClientError::Api { detail, .. } => FormError::from_detail(detail),
            other => FormError {
                field: None,
                message: other.to_string(),
            },
        }
    }

    /// True when the gateway wants this browser to sign in (401: an access secret is set and the
    /// session expired or was signed out).
    pub fn needs_sign_in(&self) -> bool {
        matches!(self, ClientError::Api { status: 401, .. })
    }

    /// True when the gateway says the thing asked about does not exist (404).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Api { status: 404, .. })
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
    let detail = match serde_json::from_str::<ErrorBody>(text) {
        Ok(body) => body.error,
        // Not the gateway's JSON (a proxy, or a crash): say it in words, never as a bare number.
        Err(_) => ErrorDetail {
            code: "unexpected_status".to_owned(),
            message: if status >= 500 {
                "The studio is having trouble right now. Try again in a moment.".to_owned()
            } else {
                "The studio refused the request. Reload the page and try again.".to_owned()
            },
            field: None,
        },
    };
    Err(ClientError::Api { status, detail })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::form::Field;

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
        assert_eq!(error.to_string(), "Write a prompt first.");
        let form_error = error.to_form_error();
        assert_eq!(form_error.field, Some(Field::Prompt));
        assert_eq!(form_error.message, "Write a prompt first.");
    }

    #[test]
    fn an_error_without_the_gateways_json_is_still_words_without_a_status_code() {
        for status in [400_u16, 404, 500, 502, 504] {
            let error = decode::<JobAccepted>(status, "<html>Bad Gateway</html>").unwrap_err();
            let message = error.to_string();
            assert!(!message.contains(&status.to_string()), "{message}");
            assert!(message.starts_with("The studio"), "{message}");
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
    fn not_found_is_recognised() {
        let body = r#"{"error":{"code":"not_found","message":"No such job."}}"#;
        assert!(decode::<JobView>(404, body).unwrap_err().is_not_found());
        assert!(!ClientError::Network.is_not_found());
    }
}
