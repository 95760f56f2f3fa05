//! Saved styles: a name for a set of settings (words before and after the prompt, a shape, LoRAs),
//! shared by the household's devices and kept in the history's database (table `styles`), so a backup
//! carries them. A [`StyleRequest`] becomes [`StyleSettings`] (checked newtypes, refusals naming the
//! field); [`apply`] turns a job request that names a style into the request the style makes of it,
//! before the request is parsed into a `JobSpec`: the job's spec is then complete, and deleting or
//! changing the style later changes nothing for a job already accepted.

use std::fmt;
use std::str::FromStr;

use rusqlite::OptionalExtension as _;
use uuid::Uuid;
use zimage_contract::styles::{
    MAX_LORA_STRENGTH, MAX_LORAS, MAX_STYLE_NAME_CHARS, MAX_STYLE_TEXT_CHARS, MAX_STYLES, MIN_LORA_STRENGTH,
};
use zimage_contract::{AspectRatio, CreateJobRequest, LoraChoice, Style, StyleRequest};

use crate::history::History;

/// A style's id: a UUID v7 minted by the gateway. A client's text is only ever parsed into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StyleId(Uuid);

impl StyleId {
    fn new() -> StyleId {
        StyleId(Uuid::now_v7())
    }
}

impl fmt::Display for StyleId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.as_hyphenated().fmt(formatter)
    }
}

impl FromStr for StyleId {
    type Err = StyleError;

    /// Only the hyphenated form of a version 7 UUID; anything else is no style of ours.
    fn from_str(text: &str) -> Result<StyleId, StyleError> {
        match Uuid::try_parse(text) {
            Ok(id) if text.len() == 36 && id.get_version_num() == 7 => Ok(StyleId(id)),
            _ => Err(StyleError::NotFound),
        }
    }
}

/// A style's name: 1..=[`MAX_STYLE_NAME_CHARS`] characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StyleName(String);

impl StyleName {
    pub fn parse(raw: &str) -> Result<StyleName, StyleError> {
        let invalid = |rule| StyleError::invalid("name", rule);
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(invalid(StyleRule::NameEmpty));
        }
        let length = trimmed.chars().count();
        if length > MAX_STYLE_NAME_CHARS {
            return Err(invalid(StyleRule::NameTooLong { length }));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(invalid(StyleRule::ControlCharacters));
        }
        Ok(StyleName(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a style holds, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct StyleSettings {
    pub name: StyleName,
    /// Trimmed, at most [`MAX_STYLE_TEXT_CHARS`] characters, no control characters but line breaks and tabs.
    pub prompt_before: String,
    pub prompt_after: String,
    pub aspect_ratio: Option<AspectRatio>,
    /// At most [`MAX_LORAS`], each name once, each strength finite and in range. Whether some backend
    /// has them is checked when a job uses the style, as for any job's LoRAs.
    pub loras: Vec<LoraChoice>,
}

impl TryFrom<StyleRequest> for StyleSettings {
    type Error = StyleError;

    fn try_from(request: StyleRequest) -> Result<StyleSettings, StyleError> {
        let name = StyleName::parse(&request.name)?;
        let prompt_before = style_text("prompt_before", &request.prompt_before)?;
        let prompt_after = style_text("prompt_after", &request.prompt_after)?;
        if request.loras.len() > MAX_LORAS {
            return Err(StyleError::invalid("loras", StyleRule::TooManyLoras));
        }
        for (index, lora) in request.loras.iter().enumerate() {
            let field = |part: &str| format!("loras[{index}].{part}");
            // The name a job would take (a file inside `models/loras`), and more than white space.
            if lora.name.trim().is_empty() || crate::validation::LoraName::parse("name", &lora.name).is_err()
            {
                return Err(StyleError::invalid(field("name"), StyleRule::LoraName));
            }
            if request.loras[..index].iter().any(|other| other.name == lora.name) {
                return Err(StyleError::invalid(field("name"), StyleRule::LoraTwice));
            }
            if !lora.strength.is_finite() || !(MIN_LORA_STRENGTH..=MAX_LORA_STRENGTH).contains(&lora.strength)
            {
                return Err(StyleError::invalid(field("strength"), StyleRule::LoraStrength));
            }
        }
        Ok(StyleSettings {
            name,
            prompt_before,
            prompt_after,
            aspect_ratio: request.aspect_ratio,
            loras: request.loras,
        })
    }
}

/// The words a style puts before or after the prompt, trimmed and checked.
fn style_text(field: &'static str, raw: &str) -> Result<String, StyleError> {
    let trimmed = raw.trim();
    let length = trimmed.chars().count();
    if length > MAX_STYLE_TEXT_CHARS {
        return Err(StyleError::invalid(field, StyleRule::TextTooLong { length }));
    }
    if trimmed
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(StyleError::invalid(field, StyleRule::ControlCharacters));
    }
    Ok(trimmed.to_owned())
}

/// A style request broke a rule, or named what is not there.
#[derive(Debug, thiserror::Error)]
pub enum StyleError {
    /// `field` is the JSON name (`name`, `prompt_before`, `loras[1].strength`...).
    #[error("{field}: {rule:?}")]
    Invalid { field: String, rule: StyleRule },
    /// Another style has this name (whatever the case of its letters).
    #[error("another style has this name")]
    NameTaken,
    /// [`MAX_STYLES`] are kept already.
    #[error("{MAX_STYLES} styles are kept already")]
    TooMany,
    /// No style has this id.
    #[error("no such style")]
    NotFound,
    /// A job named a style there is none of; `field` is the request's (`style`, or `model` under `/v1`).
    #[error("{field}: no style is called {name:?}")]
    Unknown { field: &'static str, name: String },
    #[error("the styles cannot be read or written")]
    Storage(#[source] rusqlite::Error),
}

/// The rule a style broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StyleRule {
    NameEmpty,
    NameTooLong { length: usize },
    ControlCharacters,
    TextTooLong { length: usize },
    TooManyLoras,
    LoraName,
    LoraTwice,
    LoraStrength,
}

impl StyleError {
    fn invalid(field: impl Into<String>, rule: StyleRule) -> StyleError {
        StyleError::Invalid {
            field: field.into(),
            rule,
        }
    }
}

/// The request a style makes of `request`: its words around the prompt (joined with spaces; the
/// prompt's own limit applies to the result, on the `prompt` field), its LoRAs unless the request
/// names some, its shape unless the request gives a size or a shape. An empty prompt stays empty, so
/// that it is refused as one. The result names no style.
pub fn apply(style: &Style, mut request: CreateJobRequest) -> CreateJobRequest {
    request.style = None;
    let prompt = request.prompt.trim();
    if !prompt.is_empty() {
        request.prompt = [style.prompt_before.trim(), prompt, style.prompt_after.trim()]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
    }
    if request.loras.is_empty() {
        request.loras = style.loras.clone();
    }
    if request.aspect_ratio.is_none() && request.width.is_none() && request.height.is_none() {
        request.aspect_ratio = style.aspect_ratio;
    }
    request
}

/// The saved styles, in the history's database.
#[derive(Debug, Clone)]
pub struct Styles {
    history: History,
}

const COLUMNS: &str = "id, name, prompt_before, prompt_after, aspect_ratio, loras, updated_at_ms";

impl Styles {
    pub fn new(history: History) -> Styles {
        Styles { history }
    }

    /// Every style, sorted by name (case folded).
    pub async fn list(&self) -> Result<Vec<Style>, StyleError> {
        self.history
            .with_reader(|connection| {
                let mut statement =
                    connection.prepare_cached(&format!("SELECT {COLUMNS} FROM styles ORDER BY name, id"))?;
                let rows = statement.query_map([], row_style)?;
                rows.collect()
            })
            .await
            .map_err(StyleError::Storage)
    }

    /// The style called `name` (whatever the case of its ASCII letters), if any.
    pub async fn named(&self, name: &str) -> Result<Option<Style>, StyleError> {
        let name = name.trim().to_owned();
        self.history
            .with_reader(move |connection| {
                connection
                    .prepare_cached(&format!("SELECT {COLUMNS} FROM styles WHERE name = ?1"))?
                    .query_row([name], row_style)
                    .optional()
            })
            .await
            .map_err(StyleError::Storage)
    }

    /// Keeps a new style.
    pub async fn create(&self, settings: StyleSettings) -> Result<Style, StyleError> {
        let style = style_of(StyleId::new(), settings);
        let kept = style.clone();
        let outcome = self
            .history
            .with_writer(move |connection| {
                let transaction = connection.transaction()?;
                let count: i64 =
                    transaction.query_row("SELECT count(*) FROM styles", [], |row| row.get(0))?;
                if usize::try_from(count).unwrap_or(usize::MAX) >= MAX_STYLES {
                    return Ok(Err(StyleError::TooMany));
                }
                transaction.execute(
                    &format!("INSERT INTO styles ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                    rusqlite::params_from_iter(style_params(&kept)),
                )?;
                transaction.commit()?;
                Ok(Ok(()))
            })
            .await;
        written(outcome)?;
        tracing::info!(id = %style.id, name = %style.name, "style saved");
        Ok(style)
    }

    /// Replaces a style's settings (a rename included).
    pub async fn update(&self, id: StyleId, settings: StyleSettings) -> Result<Style, StyleError> {
        let style = style_of(id, settings);
        let kept = style.clone();
        let outcome = self
            .history
            .with_writer(move |connection| {
                let changed = connection.execute(
                    "UPDATE styles SET name = ?2, prompt_before = ?3, prompt_after = ?4, aspect_ratio = ?5, \
                     loras = ?6, updated_at_ms = ?7 WHERE id = ?1",
                    rusqlite::params_from_iter(style_params(&kept)),
                )?;
                Ok(if changed == 0 {
                    Err(StyleError::NotFound)
                } else {
                    Ok(())
                })
            })
            .await;
        written(outcome)?;
        tracing::info!(%id, name = %style.name, "style changed");
        Ok(style)
    }

    /// Forgets a style. Jobs already accepted with it keep what it made of them.
    pub async fn delete(&self, id: StyleId) -> Result<(), StyleError> {
        let removed = self
            .history
            .with_writer(move |connection| {
                connection.execute("DELETE FROM styles WHERE id = ?1", [id.to_string()])
            })
            .await
            .map_err(StyleError::Storage)?;
        if removed == 0 {
            return Err(StyleError::NotFound);
        }
        tracing::info!(%id, "style deleted");
        Ok(())
    }

    /// The request with its style applied ([`apply`]), or as it is when it names none. `field` is what
    /// an unknown style's refusal names.
    pub async fn resolve(
        &self,
        request: CreateJobRequest,
        field: &'static str,
    ) -> Result<CreateJobRequest, StyleError> {
        let Some(name) = request.style.clone() else {
            return Ok(request);
        };
        let style = self.find(&name, field).await?;
        Ok(apply(&style, request))
    }

    /// The style called `name`, or a refusal on `field`.
    pub async fn find(&self, name: &str, field: &'static str) -> Result<Style, StyleError> {
        // A name no style can have is looked up no further.
        let unknown = || StyleError::Unknown {
            field,
            name: name.chars().take(MAX_STYLE_NAME_CHARS).collect(),
        };
        let name = StyleName::parse(name).map_err(|_| unknown())?;
        self.named(name.as_str()).await?.ok_or_else(unknown)
    }
}

/// A write's SQLite failure, or its own refusal; a taken name is SQLite's unique constraint.
fn written(outcome: rusqlite::Result<Result<(), StyleError>>) -> Result<(), StyleError> {
    match outcome {
        Ok(result) => result,
        Err(error) if error.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => {
            Err(StyleError::NameTaken)
        }
        Err(error) => Err(StyleError::Storage(error)),
    }
}

fn style_of(id: StyleId, settings: StyleSettings) -> Style {
    let updated_at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX));
    Style {
        id: id.to_string(),
        name: settings.name.0,
        prompt_before: settings.prompt_before,
        prompt_after: settings.prompt_after,
        aspect_ratio: settings.aspect_ratio,
        loras: settings.loras,
        updated_at_ms,
    }
}

/// A style's columns in [`COLUMNS`]' order.
fn style_params(style: &Style) -> [Box<dyn rusqlite::ToSql>; 7] {
    let ratio = style
        .aspect_ratio
        .and_then(|ratio| serde_json::to_value(ratio).ok())
        .and_then(|value| value.as_str().map(str::to_owned));
    let loras = serde_json::to_string(&style.loras).unwrap_or_else(|_| "[]".to_owned());
    [
        Box::new(style.id.clone()),
        Box::new(style.name.clone()),
        Box::new(style.prompt_before.clone()),
        Box::new(style.prompt_after.clone()),
        Box::new(ratio),
        Box::new(loras),
        Box::new(i64::try_from(style.updated_at_ms).unwrap_or(i64::MAX)),
    ]
}

fn row_style(row: &rusqlite::Row<'_>) -> rusqlite::Result<Style> {
    let ratio: Option<String> = row.get(4)?;
    let loras: String = row.get(5)?;
    let updated: i64 = row.get(6)?;
    Ok(Style {
        id: row.get(0)?,
        name: row.get(1)?,
        prompt_before: row.get(2)?,
        prompt_after: row.get(3)?,
        aspect_ratio: ratio.and_then(|ratio| serde_json::from_value(serde_json::Value::String(ratio)).ok()),
        loras: serde_json::from_str(&loras).map_err(|error| {
            rusqlite::Error::FromSqlConversionFailure(5, rusqlite::types::Type::Text, Box::new(error))
        })?,
        updated_at_ms: u64::try_from(updated).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn style() -> Style {
        Style {
            id: StyleId::new().to_string(),
            name: "watercolor".to_owned(),
            prompt_before: "a watercolor painting of".to_owned(),
            prompt_after: ", soft paper texture".to_owned(),
            aspect_ratio: Some(AspectRatio::Wide16x9),
            loras: vec![LoraChoice {
                name: "watercolor.safetensors".to_owned(),
                strength: 0.8,
            }],
            updated_at_ms: 0,
        }
    }

    fn request(prompt: &str) -> CreateJobRequest {
        CreateJobRequest {
            prompt: prompt.to_owned(),
            style: Some("watercolor".to_owned()),
            ..CreateJobRequest::default()
        }
    }

    #[test]
    fn a_style_wraps_the_prompt_and_brings_its_shape_and_loras() {
        let applied = apply(&style(), request("  a fox in snow "));
        assert_eq!(
            applied.prompt,
            "a watercolor painting of a fox in snow , soft paper texture"
        );
        assert_eq!(applied.aspect_ratio, Some(AspectRatio::Wide16x9));
        assert_eq!(applied.loras, style().loras);
        assert_eq!(applied.style, None);
    }

    #[test]
    fn the_request_s_own_size_shape_and_loras_win() {
        let own = vec![LoraChoice {
            name: "ink.safetensors".to_owned(),
            strength: 1.0,
        }];
        let sized = apply(
            &style(),
            CreateJobRequest {
                width: Some(512),
                height: Some(512),
                loras: own.clone(),
                ..request("fox")
            },
        );
        assert_eq!(
            (sized.aspect_ratio, sized.width, sized.height),
            (None, Some(512), Some(512))
        );
        assert_eq!(sized.loras, own);
        let shaped = apply(
            &style(),
            CreateJobRequest {
                aspect_ratio: Some(AspectRatio::Portrait3x4),
                ..request("fox")
            },
        );
        assert_eq!(shaped.aspect_ratio, Some(AspectRatio::Portrait3x4));
    }

    #[test]
    fn empty_words_add_no_spaces_and_an_empty_prompt_stays_empty() {
        let bare = Style {
            prompt_before: String::new(),
            prompt_after: "  ".to_owned(),
            ..style()
        };
        assert_eq!(apply(&bare, request(" fox ")).prompt, "fox");
        assert_eq!(apply(&style(), request("   ")).prompt, "   ");
    }

    #[test]
    fn the_prompt_limit_applies_to_the_wrapped_prompt() {
        let prompt = "x".repeat(zimage_contract::MAX_PROMPT_CHARS - 10);
        let wrapped = apply(&style(), request(&prompt));
        let refused = crate::validation::JobSpec::try_from(CreateJobRequest {
            loras: Vec::new(),
            ..wrapped
        })
        .unwrap_err();
        assert_eq!(refused.field, "prompt");
    }

    fn settings(name: &str) -> Result<StyleSettings, StyleError> {
        StyleSettings::try_from(StyleRequest {
            name: name.to_owned(),
            ..StyleRequest::default()
        })
    }

    fn refused_field(request: StyleRequest) -> String {
        match StyleSettings::try_from(request) {
            Err(StyleError::Invalid { field, .. }) => field,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn names_are_trimmed_and_checked_in_characters() {
        assert_eq!(settings("  水彩  ").unwrap().name.as_str(), "水彩");
        assert!(settings(&"彩".repeat(MAX_STYLE_NAME_CHARS)).is_ok());
        for bad in [
            "",
            "   ",
            &"x".repeat(MAX_STYLE_NAME_CHARS + 1),
            &"x".repeat(10_000),
            "a\u{0}b",
            "a\nb",
            "\u{1b}[31m",
        ] {
            assert_eq!(
                refused_field(StyleRequest {
                    name: bad.to_owned(),
                    ..StyleRequest::default()
                }),
                "name",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn words_and_loras_are_checked_on_their_fields() {
        let base = || StyleRequest {
            name: "ink".to_owned(),
            ..StyleRequest::default()
        };
        let lora = |name: &str, strength: f64| LoraChoice {
            name: name.to_owned(),
            strength,
        };
        assert_eq!(
            refused_field(StyleRequest {
                prompt_before: "x".repeat(MAX_STYLE_TEXT_CHARS + 1),
                ..base()
            }),
            "prompt_before"
        );
        assert_eq!(
            refused_field(StyleRequest {
                prompt_after: "a\u{7}".to_owned(),
                ..base()
            }),
            "prompt_after"
        );
        assert_eq!(
            refused_field(StyleRequest {
                loras: vec![lora("a", 1.0); MAX_LORAS + 1],
                ..base()
            }),
            "loras"
        );
        assert_eq!(
            refused_field(StyleRequest {
                loras: vec![lora("a", 1.0), lora("a", 0.5)],
                ..base()
            }),
            "loras[1].name"
        );
        // A name no job would take is no style's either: it could never be used.
        for name in [
            "  ",
            "\\",
            "/abs.safetensors",
            "../x.safetensors",
            "a/../b",
            "a\u{7}",
        ] {
            assert_eq!(
                refused_field(StyleRequest {
                    loras: vec![lora("a", 1.0), lora(name, 1.0)],
                    ..base()
                }),
                "loras[1].name",
                "{name:?}"
            );
        }
        for strength in [
            f64::NAN,
            f64::INFINITY,
            1e308,
            MAX_LORA_STRENGTH + 0.01,
            MIN_LORA_STRENGTH - 0.01,
        ] {
            assert_eq!(
                refused_field(StyleRequest {
                    loras: vec![lora("a", 1.0), lora("b", strength)],
                    ..base()
                }),
                "loras[1].strength"
            );
        }
        assert_eq!(
            refused_field(StyleRequest {
                loras: vec![lora("", 1.0)],
                ..base()
            }),
            "loras[0].name"
        );
        let fine = StyleSettings::try_from(StyleRequest {
            prompt_before: "  ink wash of ".to_owned(),
            loras: vec![lora("a", -2.0), lora("b", 2.0)],
            ..base()
        })
        .unwrap();
        assert_eq!(fine.prompt_before, "ink wash of");
    }

    #[test]
    fn only_a_hyphenated_uuid_v7_is_a_style_id() {
        let id = StyleId::new();
        assert_eq!(id.to_string().parse::<StyleId>().unwrap(), id);
        for bad in [
            "",
            "x",
            "00000000-0000-4000-8000-000000000000",
            &id.to_string().replace('-', ""),
            "../etc",
        ] {
            assert!(
                matches!(bad.parse::<StyleId>(), Err(StyleError::NotFound)),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn styles_are_kept_renamed_and_deleted_and_names_stay_unique() {
        let root = tempfile::tempdir().unwrap();
        let styles = Styles::new(History::open(root.path()).await.unwrap());
        let ink = styles.create(settings("Ink").unwrap()).await.unwrap();
        let wash = styles.create(settings("wash").unwrap()).await.unwrap();
        assert!(matches!(
            styles.create(settings("INK").unwrap()).await,
            Err(StyleError::NameTaken)
        ));
        let id: StyleId = wash.id.parse().unwrap();
        assert!(matches!(
            styles.update(id, settings("ink").unwrap()).await,
            Err(StyleError::NameTaken)
        ));
        let renamed = styles.update(id, settings("aqua").unwrap()).await.unwrap();
        let names: Vec<String> = styles
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|style| style.name)
            .collect();
        assert_eq!(names, ["aqua", "Ink"]);
        assert_eq!(styles.find("ink", "style").await.unwrap().id, ink.id);
        assert_eq!(renamed.id, wash.id);
        styles.delete(id).await.unwrap();
        assert!(matches!(styles.delete(id).await, Err(StyleError::NotFound)));
        assert!(matches!(
            styles.update(id, settings("x").unwrap()).await,
            Err(StyleError::NotFound)
        ));
        assert!(matches!(
            styles.find("aqua", "model").await,
            Err(StyleError::Unknown { field: "model", .. })
        ));
    }

    #[tokio::test]
    async fn a_household_keeps_at_most_max_styles() {
        let root = tempfile::tempdir().unwrap();
        let styles = Styles::new(History::open(root.path()).await.unwrap());
        for n in 0..MAX_STYLES {
            styles
                .create(settings(&format!("style {n}")).unwrap())
                .await
                .unwrap();
        }
        assert!(matches!(
            styles.create(settings("one more").unwrap()).await,
            Err(StyleError::TooMany)
        ));
        assert_eq!(styles.list().await.unwrap().len(), MAX_STYLES);
    }
}
