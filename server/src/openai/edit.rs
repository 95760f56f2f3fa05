//! `POST /v1/images/edits` as decisions: the picture (and mask) a request brings, from a multipart
//! form's files or the JSON form's `data:` URLs (never fetched from elsewhere), taken into the picture
//! store and resolved as the jobs' [`Source`]; a form's text fields as the JSON request they stand for.
//! Every refusal names OpenAI's `param` (`image` for the form, `images` for JSON, `mask`, `strength`).

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Map, Value};
use zimage_contract::PictureKind;
use zimage_contract::SourceRequest;
use zimage_contract::openai::ImageRef;
use zimage_contract::pictures::MAX_PICTURE_BYTES;

use crate::pictures::{Field, PictureError, PictureStore, Source};

/// Which form the request came in, which names the picture's parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `multipart/form-data`: the file part `image` (or `image[]`).
    Multipart,
    /// JSON: the array `images`.
    Json,
}

impl Form {
    /// The parameter that holds the picture.
    pub fn image_param(self) -> &'static str {
        match self {
            Form::Multipart => "image",
            Form::Json => "images",
        }
    }
}

/// Why an edit's pictures or form are refused, before any picture is decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditRefusal {
    #[error("{param}: no picture was sent")]
    NoImage { param: &'static str },
    #[error("{param}: more than one picture was sent")]
    SeveralImages { param: &'static str },
    #[error("mask: more than one mask was sent")]
    SeveralMasks,
    #[error("{param}: a remote URL, which the studio does not fetch")]
    RemoteUrl { param: &'static str },
    #[error("{param}: a file id, which the studio does not keep")]
    FileId { param: &'static str },
    #[error("{param}: not a base64 data: URL")]
    NotADataUrl { param: &'static str },
    #[error("{param}: the file is larger than {MAX_PICTURE_BYTES} bytes")]
    FileTooLarge { param: &'static str },
    #[error("the form has more than {0} parts")]
    TooManyParts(usize),
    #[error("{param}: a text field longer than {limit} bytes")]
    TextTooLong { param: String, limit: usize },
    #[error("{param}: a text field that is not UTF-8")]
    NotText { param: String },
    #[error("{param}: sent twice")]
    Duplicate { param: String },
    #[error("the body is larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("the form cannot be read: {0}")]
    UnreadableForm(String),
    #[error("neither a multipart form nor JSON")]
    NotFormOrJson,
}

impl EditRefusal {
    /// The parameter at fault, if one is.
    pub fn param(&self) -> Option<String> {
        match self {
            EditRefusal::NoImage { param }
            | EditRefusal::SeveralImages { param }
            | EditRefusal::RemoteUrl { param }
            | EditRefusal::FileId { param }
            | EditRefusal::NotADataUrl { param }
            | EditRefusal::FileTooLarge { param } => Some((*param).to_owned()),
            EditRefusal::SeveralMasks => Some("mask".to_owned()),
            EditRefusal::TextTooLong { param, .. }
            | EditRefusal::NotText { param }
            | EditRefusal::Duplicate { param } => Some(param.clone()),
            EditRefusal::TooManyParts(_)
            | EditRefusal::BodyTooLarge(_)
            | EditRefusal::UnreadableForm(_)
            | EditRefusal::NotFormOrJson => None,
        }
    }
}

/// Taking an edit's pictures failed.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error(transparent)]
    Refused(#[from] EditRefusal),
    /// The picture store refused (or could not keep) a picture; `param` is the request's name for it.
    #[error("{param}: {error}")]
    Picture {
        param: &'static str,
        #[source]
        error: PictureError,
    },
}

/// The pictures an edit brings, as bytes not yet looked at.
#[derive(Debug, Clone)]
pub struct Pictures {
    pub form: Form,
    pub images: Vec<Bytes>,
    pub mask: Option<Bytes>,
    /// The request's `strength`, if it gave one.
    pub strength: Option<f32>,
}

impl Pictures {
    /// The one picture to change; none or several are refused.
    pub fn picture(&self) -> Result<&Bytes, EditRefusal> {
        let param = self.form.image_param();
        match self.images.as_slice() {
            [] => Err(EditRefusal::NoImage { param }),
            [one] => Ok(one),
            _ => Err(EditRefusal::SeveralImages { param }),
        }
    }
}

/// The JSON form's pictures: each `data:` URL decoded. One picture only (see [`Pictures::picture`]).
pub fn json_pictures(
    images: &[ImageRef],
    mask: Option<&ImageRef>,
    strength: Option<f32>,
) -> Result<Pictures, EditRefusal> {
    let param = Form::Json.image_param();
    if images.len() > 1 {
        return Err(EditRefusal::SeveralImages { param });
    }
    let images = images
        .iter()
        .map(|image| decoded(image, param))
        .collect::<Result<Vec<_>, _>>()?;
    let mask = mask.map(|mask| decoded(mask, "mask")).transpose()?;
    Ok(Pictures {
        form: Form::Json,
        images,
        mask,
        strength,
    })
}

/// The bytes of one `ImageRef`: a base64 `data:` URL alone. A remote URL is refused without being
/// fetched (the gateway never reaches out to an address a client names), and so is a file id.
fn decoded(image: &ImageRef, param: &'static str) -> Result<Bytes, EditRefusal> {
    if image.file_id.is_some() {
        return Err(EditRefusal::FileId { param });
    }
    let url = image.image_url.as_deref().unwrap_or_default().trim();
    let scheme = url.split_once(':').map(|(scheme, _)| scheme.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("data") => {}
        Some("http" | "https") => return Err(EditRefusal::RemoteUrl { param }),
        _ => return Err(EditRefusal::NotADataUrl { param }),
    }
    let (header, data) = url.split_once(',').ok_or(EditRefusal::NotADataUrl { param })?;
    if !header.to_ascii_lowercase().ends_with(";base64") {
        return Err(EditRefusal::NotADataUrl { param });
    }
    // Checked before decoding: base64 is 4 bytes for 3.
    if data.len() / 4 * 3 > MAX_PICTURE_BYTES + 3 {
        return Err(EditRefusal::FileTooLarge { param });
    }
    // Some clients wrap long base64 lines.
    let data: Vec<u8> = data.bytes().filter(|byte| !byte.is_ascii_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&data)
        .map_err(|_| EditRefusal::NotADataUrl { param })?;
    if bytes.len() > MAX_PICTURE_BYTES {
        return Err(EditRefusal::FileTooLarge { param });
    }
    Ok(Bytes::from(bytes))
}

/// Form fields whose values are numbers in the JSON request.
const NUMBERS: [&str; 5] = ["n", "output_compression", "partial_images", "seed", "strength"];
/// Form fields whose values are booleans.
const BOOLEANS: [&str; 1] = ["stream"];

/// A multipart form's text fields as the JSON object of the request they stand for: `n=2` is the
/// number 2, `stream=true` the boolean, the rest text. A value that is not what its field takes stays
/// text, so the request's own parse refuses it, naming the field. A field sent twice is refused.
pub fn form_fields(fields: Vec<(String, String)>) -> Result<Value, EditRefusal> {
    let mut object = Map::new();
    for (name, text) in fields {
        let trimmed = text.trim();
        let value = if NUMBERS.contains(&name.as_str()) {
            serde_json::from_str::<serde_json::Number>(trimmed)
                .map_or(Value::String(text.clone()), Value::Number)
        } else if BOOLEANS.contains(&name.as_str()) {
            match trimmed.to_ascii_lowercase().as_str() {
                "true" | "1" => Value::Bool(true),
                "false" | "0" => Value::Bool(false),
                _ => Value::String(text.clone()),
            }
        } else {
            Value::String(text)
        };
        if object.contains_key(&name) {
            return Err(EditRefusal::Duplicate { param: name });
        }
        object.insert(name, value);
    }
    Ok(Value::Object(object))
}

/// Takes the edit's picture (and mask) into the store and resolves them as the jobs' source: the
/// picture cleaned and scaled as any upload, the mask scaled with it, the strength checked (its
/// default is the pictures' own: 0.6, or 1.0 with a mask).
pub async fn source(store: &PictureStore, pictures: Pictures) -> Result<Source, EditError> {
    let param = pictures.form.image_param();
    let picture = pictures.picture()?.clone();
    let refused = |param: &'static str| move |error: PictureError| EditError::Picture { param, error };
    let stored = store
        .upload(picture.clone(), PictureKind::Picture)
        .await
        .map_err(refused(param))?;
    let mask = match pictures.mask {
        Some(mask) => Some(
            store
                .upload_mask_over(mask, picture, (stored.width, stored.height))
                .await
                .map_err(|error| {
                    let param = match &error {
                        PictureError::Refused {
                            field: Field::Picture,
                            ..
                        } => param,
                        _ => "mask",
                    };
                    EditError::Picture { param, error }
                })?,
        ),
        None => None,
    };
    let request = SourceRequest {
        picture: stored.id.to_hex(),
        strength: pictures.strength,
        mask: mask.map(|mask| mask.id.to_hex()),
    };
    store.resolve(&request).await.map_err(|error| {
        let name = match &error {
            PictureError::Refused { field, .. } => match field {
                Field::SourceStrength => "strength",
                Field::SourceMask | Field::Mask => "mask",
                Field::SourcePicture | Field::Picture => param,
            },
            _ => param,
        };
        EditError::Picture { param: name, error }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_url(bytes: &[u8]) -> ImageRef {
        ImageRef {
            image_url: Some(format!(
                "data:image/png;base64,{}",
                base64::engine::general_purpose::STANDARD.encode(bytes)
            )),
            file_id: None,
        }
    }

    fn url(text: &str) -> ImageRef {
        ImageRef {
            image_url: Some(text.to_owned()),
            file_id: None,
        }
    }

    #[test]
    fn a_data_url_is_decoded_and_remote_urls_and_file_ids_are_refused_unfetched() {
        let pictures = json_pictures(&[data_url(b"\x89PNG")], Some(&data_url(b"mask")), Some(0.5)).unwrap();
        assert_eq!(pictures.picture().unwrap().as_ref(), b"\x89PNG");
        assert_eq!(pictures.mask.as_deref(), Some(&b"mask"[..]));
        assert_eq!(pictures.strength, Some(0.5));
        for (image, refusal) in [
            (
                url("https://example.com/cat.png"),
                EditRefusal::RemoteUrl { param: "images" },
            ),
            (
                url("HTTP://192.168.1.1/x.png"),
                EditRefusal::RemoteUrl { param: "images" },
            ),
            (
                url("file:///etc/passwd"),
                EditRefusal::NotADataUrl { param: "images" },
            ),
            (
                url("data:image/png,not-base64"),
                EditRefusal::NotADataUrl { param: "images" },
            ),
            (
                url("data:image/png;base64,%%%"),
                EditRefusal::NotADataUrl { param: "images" },
            ),
            (
                ImageRef {
                    image_url: None,
                    file_id: Some("file-abc".to_owned()),
                },
                EditRefusal::FileId { param: "images" },
            ),
            (ImageRef::default(), EditRefusal::NotADataUrl { param: "images" }),
        ] {
            assert_eq!(
                json_pictures(std::slice::from_ref(&image), None, None).unwrap_err(),
                refusal,
                "{image:?}"
            );
        }
        assert_eq!(
            json_pictures(&[data_url(b"x")], Some(&url("https://example.com/m.png")), None).unwrap_err(),
            EditRefusal::RemoteUrl { param: "mask" }
        );
        let wrapped = url("data:image/png;base64,iVBO\r\nRw==");
        assert_eq!(
            json_pictures(&[wrapped], None, None).unwrap().images[0].as_ref(),
            b"\x89PNG"
        );
    }

    #[test]
    fn exactly_one_picture_is_taken() {
        let none = json_pictures(&[], None, None).unwrap();
        assert_eq!(
            none.picture().unwrap_err(),
            EditRefusal::NoImage { param: "images" }
        );
        assert_eq!(
            json_pictures(&[data_url(b"a"), data_url(b"b")], None, None).unwrap_err(),
            EditRefusal::SeveralImages { param: "images" }
        );
        let form = Pictures {
            form: Form::Multipart,
            images: vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")],
            mask: None,
            strength: None,
        };
        assert_eq!(
            form.picture().unwrap_err(),
            EditRefusal::SeveralImages { param: "image" }
        );
    }

    #[test]
    fn a_data_url_over_the_limit_is_refused_before_it_is_decoded() {
        let huge = format!(
            "data:image/png;base64,{}",
            "A".repeat(MAX_PICTURE_BYTES / 3 * 4 + 64)
        );
        assert_eq!(
            json_pictures(&[url(&huge)], None, None).unwrap_err(),
            EditRefusal::FileTooLarge { param: "images" }
        );
    }

    fn png(image: image::DynamicImage) -> Bytes {
        let mut bytes = Vec::new();
        image
            .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
            .unwrap();
        Bytes::from(bytes)
    }

    fn mask(width: u32, height: u32) -> Bytes {
        png(image::RgbaImage::from_fn(width, height, |x, _| {
            image::Rgba([0, 0, 0, if x < width / 2 { 0 } else { 255 }])
        })
        .into())
    }

    fn form(picture: Bytes, mask: Option<Bytes>, strength: Option<f32>) -> Pictures {
        Pictures {
            form: Form::Multipart,
            images: vec![picture],
            mask,
            strength,
        }
    }

    #[tokio::test]
    async fn a_mask_of_the_pictures_size_as_sent_is_scaled_with_it_and_others_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = PictureStore::open(dir.path()).await.unwrap();
        let picture = png(image::RgbImage::from_pixel(2048, 1024, image::Rgb([200, 30, 40])).into());

        let masked = source(&store, form(picture.clone(), Some(mask(2048, 1024)), None))
            .await
            .unwrap();
        assert_eq!((masked.width, masked.height), (1024, 512));
        assert_eq!(masked.strength.get(), 1.0);
        let kept = store.read(masked.mask.unwrap()).await.unwrap().unwrap();
        let kept = image::load_from_memory(&kept).unwrap().into_luma_alpha8();
        assert_eq!(kept.dimensions(), (1024, 512));
        // Still transparent on the left, opaque on the right, where the mask said.
        assert_eq!(kept.get_pixel(100, 256).0[1], 0);
        assert_eq!(kept.get_pixel(900, 256).0[1], 255);

        // A mask of the kept size is taken as it is; the default strength without one is 0.6.
        assert!(
            source(&store, form(picture.clone(), Some(mask(1024, 512)), None))
                .await
                .is_ok()
        );
        let plain = source(&store, form(picture.clone(), None, None)).await.unwrap();
        assert_eq!(plain.strength.get(), 0.6);

        let param = |result: Result<Source, EditError>| match result.unwrap_err() {
            EditError::Picture { param, .. } => param.to_owned(),
            EditError::Refused(refusal) => refusal.param().unwrap(),
        };
        let other_size = source(&store, form(picture.clone(), Some(mask(512, 512)), None)).await;
        assert_eq!(param(other_size), "mask");
        let opaque = png(image::RgbImage::new(2048, 1024).into());
        assert_eq!(
            param(source(&store, form(picture.clone(), Some(opaque), None)).await),
            "mask"
        );
        let weak = source(&store, form(picture.clone(), None, Some(0.05))).await;
        assert_eq!(param(weak), "strength");
        let text = source(&store, form(Bytes::from_static(b"not a picture"), None, None)).await;
        assert_eq!(param(text), "image");
    }

    #[test]
    fn form_fields_become_the_json_request_they_stand_for() {
        let fields = |pairs: &[(&str, &str)]| {
            form_fields(
                pairs
                    .iter()
                    .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                    .collect(),
            )
        };
        let value = fields(&[
            ("model", "gpt-image-1"),
            ("prompt", " a fox "),
            ("n", "2"),
            ("stream", "true"),
            ("partial_images", "1"),
            ("strength", "0.5"),
            ("size", "auto"),
        ])
        .unwrap();
        assert_eq!(
            value,
            serde_json::json!({"model": "gpt-image-1", "prompt": " a fox ", "n": 2, "stream": true,
                "partial_images": 1, "strength": 0.5, "size": "auto"})
        );
        let request: zimage_contract::openai::ImageEditRequest = serde_json::from_value(value).unwrap();
        assert_eq!((request.n, request.stream), (Some(2), Some(true)));
        // Not a number: left as text, for the request's parse to refuse naming `n`.
        assert_eq!(fields(&[("n", "two")]).unwrap(), serde_json::json!({"n": "two"}));
        assert_eq!(
            fields(&[("prompt", "a"), ("prompt", "b")]).unwrap_err(),
            EditRefusal::Duplicate {
                param: "prompt".to_owned()
            }
        );
    }
}
