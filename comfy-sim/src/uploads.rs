//! `POST /upload/image` as ComfyUI 0.8.0's `server.py` (`image_upload`) answers it, and the input
//! folder as `LoadImage` sees it: which files it lists, which names it loads.
//!
//! As recorded: the form's `image` file is written under its own file name into `type` (`input` by
//! default) and `subfolder`; the same name with the same bytes gives the existing name back and writes
//! nothing, with other bytes it is renamed `name (1).ext` unless `overwrite` is `true` or `1`; a
//! subfolder or file name that leads outside the folder, or a form without `image`, is a 400 with an
//! empty body. Any bytes are taken: ComfyUI checks nothing until `LoadImage` opens the file.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::extract::State;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::shared::Shared;

/// aiohttp's `client_max_size` with ComfyUI's default `--max-upload-size` of 100 MB.
pub(crate) const MAX_UPLOAD_BYTES: usize = 100 * 1024 * 1024;

/// The form of one upload.
#[derive(Debug, Default)]
struct Form {
    /// The `image` field: its file name and bytes, or `None` when it was a plain field (no file).
    image: Option<Option<(String, Vec<u8>)>>,
    folder_type: Option<String>,
    subfolder: Option<String>,
    overwrite: Option<String>,
}

/// `POST /upload/image`.
pub(crate) async fn upload_image(
    State(shared): State<Arc<Shared>>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    let form = match read_form(multipart).await {
        Ok(form) => form,
        Err(status) => return status.into_response(),
    };
    let folder_type = form.folder_type.unwrap_or_else(|| "input".to_owned());
    let base = match folder_type.as_str() {
        "input" => shared.dirs.input.clone(),
        "temp" => shared.dirs.temp.clone(),
        "output" => shared.dirs.output.clone(),
        // `get_dir_by_type` leaves its folder unbound: an UnboundLocalError, aiohttp's 500.
        _ => return crate::http::internal_error(),
    };
    let (file_name, bytes) = match form.image {
        Some(Some(file)) => file,
        // A plain `image` field has no `.file`: an AttributeError.
        Some(None) => return crate::http::internal_error(),
        None => return StatusCode::BAD_REQUEST.into_response(),
    };
    if file_name.is_empty() {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let subfolder = form.subfolder.unwrap_or_default();
    let folder = normalize(&base.join(&subfolder));
    if !normalize(&folder.join(&file_name)).starts_with(&base) {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let overwrite = matches!(form.overwrite.as_deref(), Some("true" | "1"));
    let written = tokio::task::spawn_blocking(move || save(&folder, &file_name, &bytes, overwrite)).await;
    match written {
        Ok(Ok(name)) => {
            crate::http::ok_json(&json!({"name": name, "subfolder": subfolder, "type": folder_type}))
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "upload could not be written");
            crate::http::internal_error()
        }
        Err(_) => crate::http::internal_error(),
    }
}

async fn read_form(multipart: Result<Multipart, MultipartRejection>) -> Result<Form, StatusCode> {
    // aiohttp's `post()` of a body that is not a form is an empty form: no image, 400.
    let mut multipart = multipart.map_err(|_| StatusCode::BAD_REQUEST)?;
    let mut form = Form::default();
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(error) if error.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(StatusCode::PAYLOAD_TOO_LARGE);
            }
            Err(_) => return Err(StatusCode::BAD_REQUEST),
        };
        let name = field.name().unwrap_or_default().to_owned();
        let file_name = field.file_name().map(str::to_owned);
        let bytes = field.bytes().await.map_err(|error| {
            if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            }
        })?;
        let text = || String::from_utf8_lossy(&bytes).into_owned();
        // A repeated field keeps its first value, as `MultiDict.get` does.
        match name.as_str() {
            "image" if form.image.is_none() => {
                form.image = Some(file_name.map(|file_name| (file_name, bytes.to_vec())));
            }
            "type" if form.folder_type.is_none() => form.folder_type = Some(text()),
            "subfolder" if form.subfolder.is_none() => form.subfolder = Some(text()),
            "overwrite" if form.overwrite.is_none() => form.overwrite = Some(text()),
            _ => {}
        }
    }
    Ok(form)
}

/// Writes the upload as `image_upload` does and answers the name it got.
fn save(folder: &Path, file_name: &str, bytes: &[u8], overwrite: bool) -> std::io::Result<String> {
    std::fs::create_dir_all(folder)?;
    let mut name = file_name.to_owned();
    if !overwrite {
        let (stem, extension) = split_extension(file_name);
        let mut counter = 1;
        while let Ok(existing) = std::fs::read(folder.join(&name)) {
            // `compare_image_hash`: the same bytes under the same name are the same upload.
            if existing == bytes {
                return Ok(name);
            }
            name = format!("{stem} ({counter}){extension}");
            counter += 1;
        }
    }
    std::fs::write(folder.join(&name), bytes)?;
    Ok(name)
}

/// `os.path.splitext`: the extension with its dot, none for a leading dot alone.
fn split_extension(file_name: &str) -> (&str, &str) {
    match file_name.rfind('.') {
        Some(dot) if dot > 0 && !file_name[..dot].ends_with('/') => file_name.split_at(dot),
        _ => (file_name, ""),
    }
}

/// Lexically resolves `.` and `..` (`os.path.normpath` / `abspath`).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The files `LoadImage` offers: those directly in the input folder, sorted (subfolders' files load
/// by name but are not listed).
pub(crate) fn listed_files(input: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(input)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
                .filter_map(|entry| entry.file_name().to_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The file `LoadImage.image` names (`folder_paths.get_annotated_filepath`): `sub/name.png` within the
/// input folder, or with an ` [input]`, ` [output]` or ` [temp]` suffix in that folder. `None` when it
/// leads outside.
pub(crate) fn load_image_path(shared: &Shared, name: &str) -> Option<PathBuf> {
    let (name, base) = [
        (" [output]", &shared.dirs.output),
        (" [input]", &shared.dirs.input),
        (" [temp]", &shared.dirs.temp),
    ]
    .into_iter()
    .find_map(|(suffix, dir)| name.strip_suffix(suffix).map(|name| (name, dir)))
    .unwrap_or((name, &shared.dirs.input));
    let path = normalize(&base.join(name));
    (path.starts_with(base) && path != *base).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_split_as_python_does() {
        assert_eq!(split_extension("red.png"), ("red", ".png"));
        assert_eq!(split_extension("a.b.png"), ("a.b", ".png"));
        assert_eq!(split_extension("noext"), ("noext", ""));
        assert_eq!(split_extension(".hidden"), (".hidden", ""));
    }

    #[test]
    fn the_same_bytes_keep_their_name_and_other_bytes_are_renamed() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(save(dir.path(), "red.png", b"one", false).unwrap(), "red.png");
        assert_eq!(save(dir.path(), "red.png", b"one", false).unwrap(), "red.png");
        assert_eq!(save(dir.path(), "red.png", b"two", false).unwrap(), "red (1).png");
        assert_eq!(
            save(dir.path(), "red.png", b"three", false).unwrap(),
            "red (2).png"
        );
        assert_eq!(save(dir.path(), "red.png", b"two", false).unwrap(), "red (1).png");
        assert_eq!(save(dir.path(), "red.png", b"four", true).unwrap(), "red.png");
        assert_eq!(std::fs::read(dir.path().join("red.png")).unwrap(), b"four");
        assert_eq!(
            listed_files(dir.path()),
            ["red (1).png", "red (2).png", "red.png"]
        );
    }
}
