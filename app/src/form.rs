//! The generate form as plain data: prompt, seed, aspect ratio and the picture to start from with its
//! strength, the request they make, and the field errors shown beside them.
//!
//! The gateway is the judge of what is valid (its message is what people read); the form only refuses
//! what cannot even be sent, such as a seed that is not a number.

use crate::api::pictures::{DEFAULT_MASKED_STRENGTH, DEFAULT_STRENGTH, MAX_STRENGTH, MIN_STRENGTH};
use crate::api::styles::MAX_LORAS;
use crate::api::{
    AspectRatio, CreateJobRequest, ErrorDetail, LoraChoice, MAX_PROMPT_CHARS, MAX_SEED, SourceRequest, Style,
    StyleRequest,
};
use crate::client::Uploaded;
use crate::i18n::Ui;

/// The picture a job starts from, as the gateway stored it (its clean size, which the result keeps
/// unless a ratio is picked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePicture {
    pub id: String,
    pub width: u32,
    pub height: u32,
}

impl From<Uploaded> for SourcePicture {
    fn from(uploaded: Uploaded) -> SourcePicture {
        SourcePicture {
            id: uploaded.id,
            width: uploaded.width,
            height: uploaded.height,
        }
    }
}

/// How much of the picture may change (the sampler's denoise), in hundredths: 20 to 100 in steps of
/// 5, as the range input moves. Kept whole so the form stays comparable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Strength(u8);

/// How a strength is said in words, from "a little" to "everything".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrengthWords {
    ALittle,
    Some,
    ALot,
    Most,
    Everything,
}

impl Strength {
    /// The range input's bounds and step, in hundredths.
    pub const MIN: u8 = hundredths(MIN_STRENGTH);
    pub const MAX: u8 = hundredths(MAX_STRENGTH);
    pub const STEP: u8 = 5;
    pub const DEFAULT: Strength = Strength(hundredths(DEFAULT_STRENGTH));
    /// With a mask the painted part is made anew.
    pub const MASKED_DEFAULT: Strength = Strength(hundredths(DEFAULT_MASKED_STRENGTH));

    /// The strength the range input's value (`"0.45"`) stands for, held within the bounds and on a
    /// step; `None` when it is not a decimal number. Read as whole hundredths, without the float
    /// parser (its code and tables would be a large part of the browser bundle for this alone).
    pub fn from_input(value: &str) -> Option<Strength> {
        read_thousandths(value).map(Strength::from_thousandths)
    }

    /// The nearest strength on a step to `value` (0.2 to 1.0).
    pub fn from_value(value: f32) -> Strength {
        if !value.is_finite() {
            return Strength::DEFAULT;
        }
        Strength::from_thousandths((value.clamp(0.0, 10.0) * 1000.0 + 0.5) as u32)
    }

    fn from_thousandths(thousandths: u32) -> Strength {
        let step = u32::from(Strength::STEP) * 10;
        let stepped = (thousandths + step / 2) / step * u32::from(Strength::STEP);
        Strength(stepped.clamp(u32::from(Strength::MIN), u32::from(Strength::MAX)) as u8)
    }

    /// As sent to the gateway.
    pub fn value(self) -> f32 {
        f32::from(self.0) / 100.0
    }

    /// As the range input's `value` and as people read it (`"0.6"`, `"0.35"`, `"1"`): written from
    /// whole hundredths, without the float formatter.
    pub fn input_value(self) -> String {
        hundredths_text(u32::from(self.0))
    }

    /// The range input's `step` (`"0.05"`).
    pub fn input_step() -> String {
        Strength(Strength::STEP).input_value()
    }

    /// The words for this strength.
    pub fn words(self) -> StrengthWords {
        match self.0 {
            0..=35 => StrengthWords::ALittle,
            36..=55 => StrengthWords::Some,
            56..=75 => StrengthWords::ALot,
            76..=99 => StrengthWords::Most,
            _ => StrengthWords::Everything,
        }
    }

    /// What the control says and reads out: the words and the number (`"a lot (0.6)"`).
    pub fn value_text(self, ui: &Ui) -> String {
        (ui.strength_value)(ui.strength_words(self.words()), &self.input_value())
    }
}

/// A range input's value (`"0.45"`) as whole thousandths; `None` when it is not a decimal number.
/// Read without the float parser (its code and tables would be a large part of the browser bundle).
fn read_thousandths(value: &str) -> Option<u32> {
    let (whole, fraction) = value.trim().split_once('.').unwrap_or((value.trim(), ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let digits = |text: &str| text.bytes().all(|byte| byte.is_ascii_digit());
    if !digits(whole) || !digits(fraction) || whole.len() > 3 {
        return None;
    }
    let whole: u32 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    // The first three decimals, as thousandths.
    let thousandths = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0, |sum, digit| sum * 10 + u32::from(digit - b'0'));
    Some(whole * 1000 + thousandths)
}

/// Whole hundredths as people read them (`"0.6"`, `"0.35"`, `"1"`), without the float formatter.
fn hundredths_text(value: u32) -> String {
    let (whole, hundredths) = (value / 100, value % 100);
    match (hundredths, hundredths % 10) {
        (0, _) => format!("{whole}"),
        (_, 0) => format!("{whole}.{}", hundredths / 10),
        _ => format!("{whole}.{hundredths:02}"),
    }
}

/// A LoRA in the form: its file's name and its strength in hundredths, 0 to 200 in steps of 5 (the
/// slider's range; the gateway also takes negative strengths, which the page does not offer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormLora {
    pub name: String,
    pub strength: u8,
}

impl FormLora {
    /// The slider's bounds and step, in hundredths.
    pub const MAX: u8 = 200;
    pub const STEP: u8 = 5;

    /// A LoRA newly picked, at the contract's default strength.
    pub fn new(name: String) -> FormLora {
        FormLora { name, strength: 100 }
    }

    /// A LoRA as a record or a style names it, its strength on the slider's steps.
    pub fn from_choice(choice: &LoraChoice) -> FormLora {
        let strength = if choice.strength.is_finite() {
            choice.strength
        } else {
            1.0
        };
        FormLora {
            name: choice.name.clone(),
            strength: LoraStrength::from_thousandths((strength.clamp(0.0, 2.0) * 1000.0 + 0.5) as u32),
        }
    }

    /// As the gateway takes it.
    pub fn choice(&self) -> LoraChoice {
        LoraChoice {
            name: self.name.clone(),
            strength: f64::from(self.strength) / 100.0,
        }
    }
}

/// The strength slider of a LoRA, in hundredths.
pub struct LoraStrength;

impl LoraStrength {
    /// The slider's value (`"0.85"`), on a step and within the range; `None` when not a number.
    pub fn from_input(value: &str) -> Option<u8> {
        read_thousandths(value).map(LoraStrength::from_thousandths)
    }

    fn from_thousandths(thousandths: u32) -> u8 {
        let step = u32::from(FormLora::STEP) * 10;
        let stepped = (thousandths + step / 2) / step * u32::from(FormLora::STEP);
        stepped.min(u32::from(FormLora::MAX)) as u8
    }

    /// As the slider's `value` and as people read it.
    pub fn text(hundredths: u8) -> String {
        hundredths_text(u32::from(hundredths))
    }

    /// The strength of a record (`0.8`) as people read it, on the slider's steps.
    pub fn text_of(strength: f64) -> String {
        let negative = strength < 0.0;
        let hundredths = (strength.abs().min(9.0) * 100.0 + 0.5) as u32;
        format!(
            "{}{}",
            if negative { "-" } else { "" },
            hundredths_text(hundredths)
        )
    }
}

const fn hundredths(value: f32) -> u8 {
    // Exact for the contract's bounds (0.2, 0.6, 1.0); const rounding of floats is not available.
    (value * 100.0 + 0.5) as u8
}

/// The controls of the form, as typed by the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StudioForm {
    /// The prompt as typed (trimmed only when sent).
    pub prompt: String,
    /// The seed field as typed; empty means "a random seed for each image".
    pub seed: String,
    /// The chosen aspect ratio chip; `None` (offered only with a picture) keeps the picture's shape.
    pub aspect_ratio: Option<AspectRatio>,
    /// The picture to start from, once uploaded.
    pub source: Option<SourcePicture>,
    /// How much of the picture may change.
    pub strength: Strength,
    /// True once the person moved the strength (painting a mask then leaves it as they set it).
    pub strength_chosen: bool,
    /// The LoRAs picked, at most [`MAX_LORAS`].
    pub loras: Vec<FormLora>,
    /// The saved style applied last (its words wrap the prompt at the gateway), by name.
    pub style: Option<String>,
}

impl Default for StudioForm {
    fn default() -> Self {
        StudioForm {
            prompt: String::new(),
            seed: String::new(),
            aspect_ratio: Some(AspectRatio::Square),
            source: None,
            strength: Strength::DEFAULT,
            strength_chosen: false,
            loras: Vec::new(),
            style: None,
        }
    }
}

/// A control of the form an error can point at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Prompt,
    Seed,
    AspectRatio,
    /// The picture to start from, its strength or its mask.
    Source,
    /// The LoRAs (`loras`, `loras[0].name`...).
    Loras,
}

impl Field {
    /// Maps the `field` of a gateway error (the request's JSON key) to the control that shows it.
    pub fn from_wire(name: &str) -> Option<Field> {
        match name {
            "prompt" => Some(Field::Prompt),
            "seed" => Some(Field::Seed),
            // Sizes are chosen through the ratio chips, so size errors belong to them.
            "aspect_ratio" | "width" | "height" => Some(Field::AspectRatio),
            // `source.picture`, `source.strength`, `source.mask`, and the uploads' `picture`, `mask`.
            "picture" | "mask" => Some(Field::Source),
            name if name == "source" || name.starts_with("source.") => Some(Field::Source),
            name if name.starts_with("loras") => Some(Field::Loras),
            _ => None,
        }
    }
}

/// An error to show to people: beside a control when it names one, above the form otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormError {
    pub field: Option<Field>,
    pub message: String,
}

impl FormError {
    /// The gateway's error, placed beside the control it names.
    pub fn from_detail(detail: &ErrorDetail) -> FormError {
        FormError {
            field: detail.field.as_deref().and_then(Field::from_wire),
            message: detail.message.clone(),
        }
    }

    /// The message if it belongs to `field`.
    pub fn message_for(&self, field: Field) -> Option<&str> {
        (self.field == Some(field)).then_some(self.message.as_str())
    }
}

impl StudioForm {
    /// Characters of the prompt as the gateway counts them (Unicode scalar values, after trimming).
    pub fn prompt_chars(&self) -> usize {
        self.prompt.trim().chars().count()
    }

    /// True when the prompt is longer than the gateway accepts.
    pub fn prompt_too_long(&self) -> bool {
        self.prompt_chars() > MAX_PROMPT_CHARS
    }

    /// The fixed seed, `None` when the field is empty (random), or an error naming the seed field.
    pub fn seed(&self, ui: &Ui) -> Result<Option<u64>, FormError> {
        let text = self.seed.trim();
        if text.is_empty() {
            return Ok(None);
        }
        match text.parse::<u64>() {
            Ok(seed) if seed <= MAX_SEED => Ok(Some(seed)),
            _ => Err(FormError {
                field: Some(Field::Seed),
                message: (ui.seed_invalid)(MAX_SEED),
            }),
        }
    }

    /// The body of `POST /api/jobs`, with `mask` (an uploaded mask's id) when part of the picture was
    /// painted over. The prompt goes as typed: the gateway trims it and explains what is wrong with it.
    /// With a picture and no ratio picked, no size is sent: the image keeps the picture's.
    pub fn request(&self, ui: &Ui, mask: Option<String>) -> Result<CreateJobRequest, FormError> {
        let source = self.source.as_ref().map(|picture| SourceRequest {
            picture: picture.id.clone(),
            strength: Some(self.strength.value()),
            mask,
        });
        let aspect_ratio = match &source {
            Some(_) => self.aspect_ratio,
            None => Some(self.aspect_ratio.unwrap_or(AspectRatio::Square)),
        };
        Ok(CreateJobRequest {
            prompt: self.prompt.clone(),
            seed: self.seed(ui)?,
            aspect_ratio,
            source,
            loras: self.loras.iter().map(FormLora::choice).collect(),
            style: self.style.clone(),
            ..CreateJobRequest::default()
        })
    }

    /// Picks a LoRA (at most [`MAX_LORAS`], each once).
    pub fn add_lora(&mut self, name: String) {
        if self.loras.len() < MAX_LORAS && !self.loras.iter().any(|lora| lora.name == name) {
            self.loras.push(FormLora::new(name));
        }
    }

    /// Takes a picked LoRA out.
    pub fn remove_lora(&mut self, name: &str) {
        self.loras.retain(|lora| lora.name != name);
    }

    /// A picked LoRA's slider moved (a strength read by [`LoraStrength::from_input`]).
    pub fn set_lora_strength(&mut self, name: &str, strength: u8) {
        if let Some(lora) = self.loras.iter_mut().find(|lora| lora.name == name) {
            lora.strength = strength.min(FormLora::MAX);
        }
    }

    /// A LoRA's trigger words tapped: they go at the end of the prompt, after a comma.
    pub fn add_words(&mut self, words: &str) {
        let kept = self.prompt.trim_end().len();
        self.prompt.truncate(kept);
        if !self.prompt.is_empty() {
            self.prompt.push_str(", ");
        }
        self.prompt.push_str(words);
    }

    /// A saved style applied with one tap: its shape and LoRAs come into the form (where they can
    /// still be changed), its words wrap the prompt when the job is made.
    pub fn apply_style(&mut self, style: &Style) {
        self.style = Some(style.name.clone());
        if let Some(ratio) = style.aspect_ratio {
            self.aspect_ratio = Some(ratio);
        }
        self.loras = style.loras.iter().map(FormLora::from_choice).collect();
    }

    /// What "save as a style" keeps of the form: its shape and LoRAs, with the words given.
    pub fn style_request(&self, name: String, prompt_before: String, prompt_after: String) -> StyleRequest {
        StyleRequest {
            name,
            prompt_before,
            prompt_after,
            aspect_ratio: self.aspect_ratio,
            loras: self.loras.iter().map(FormLora::choice).collect(),
        }
    }

    /// A picture was chosen: the result keeps its shape until a ratio is picked.
    pub fn start_from(&mut self, picture: SourcePicture) {
        self.source = Some(picture);
        self.aspect_ratio = None;
    }

    /// The picture was removed: back to making images from words alone, in a square unless a ratio
    /// was picked.
    pub fn remove_source(&mut self) {
        self.source = None;
        self.aspect_ratio.get_or_insert(AspectRatio::Square);
    }

    /// The person moved the strength control.
    pub fn choose_strength(&mut self, strength: Strength) {
        self.strength = strength;
        self.strength_chosen = true;
    }

    /// Part of the picture was painted over: unless the person set a strength, the painted part is
    /// made anew (as the gateway's default for a mask).
    pub fn painting_started(&mut self) {
        if !self.strength_chosen {
            self.strength = Strength::MASKED_DEFAULT;
        }
    }

    /// Fixes the seed to `seed` (the dice and "reuse seed").
    pub fn fix_seed(&mut self, seed: u64) {
        self.seed = seed.to_string();
    }

    /// Fills the form from an earlier image ("reuse settings"). A size that no chip gives keeps the
    /// current chip.
    /// `loras`: the image's, or `None` to keep the form's.
    pub fn reuse(&mut self, prompt: &str, seed: u64, width: u32, height: u32, loras: Option<&[LoraChoice]>) {
        prompt.clone_into(&mut self.prompt);
        self.fix_seed(seed);
        // The record's prompt is already wrapped by any style it was made with.
        self.style = None;
        if let Some(loras) = loras {
            self.loras = loras.iter().map(FormLora::from_choice).collect();
        }
        if let Some(ratio) = ratio_of_size(width, height) {
            self.aspect_ratio = Some(ratio);
        }
    }
}

/// The chip that gives exactly `width` x `height`, if any.
pub fn ratio_of_size(width: u32, height: u32) -> Option<AspectRatio> {
    AspectRatio::ALL
        .into_iter()
        .find(|ratio| ratio.size() == (width, height))
}

/// A seed from 53 random bits: every seed the gateway accepts is equally likely.
pub fn seed_from_random(unit_interval: f64) -> u64 {
    // `unit_interval` is in [0, 1), as `Math.random()` gives; scaling by 2^53 keeps all 53 bits.
    let scaled = (unit_interval.clamp(0.0, 1.0) * (MAX_SEED as f64 + 1.0)).floor();
    (scaled as u64).min(MAX_SEED)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::EN;

    #[test]
    fn an_empty_seed_field_means_a_random_seed() {
        let form = StudioForm {
            seed: "  ".to_owned(),
            ..StudioForm::default()
        };
        assert_eq!(form.seed(&EN), Ok(None));
    }

    #[test]
    fn a_typed_seed_is_sent_and_one_above_the_javascript_limit_is_refused_on_the_seed_field() {
        let mut form = StudioForm {
            prompt: "a cat".to_owned(),
            seed: "42".to_owned(),
            ..StudioForm::default()
        };
        assert_eq!(form.request(&EN, None).unwrap().seed, Some(42));
        form.seed = MAX_SEED.to_string();
        assert_eq!(form.seed(&EN), Ok(Some(MAX_SEED)));
        form.seed = (MAX_SEED + 1).to_string();
        assert_eq!(form.request(&EN, None).unwrap_err().field, Some(Field::Seed));
        form.seed = "-3".to_owned();
        assert_eq!(form.seed(&EN).unwrap_err().field, Some(Field::Seed));
        form.seed = "twelve".to_owned();
        assert!(form.seed(&EN).is_err());
    }

    #[test]
    fn the_request_carries_the_prompt_as_typed_and_the_chosen_ratio() {
        let form = StudioForm {
            prompt: " 一只猫 ".to_owned(),
            aspect_ratio: Some(AspectRatio::Wide16x9),
            ..StudioForm::default()
        };
        let request = form.request(&EN, None).unwrap();
        assert_eq!(request.prompt, " 一只猫 ");
        assert_eq!(request.aspect_ratio, Some(AspectRatio::Wide16x9));
        assert_eq!(
            (request.seed, request.width, request.height, request.batch_size),
            (None, None, None, None)
        );
        assert_eq!(request.source, None);
    }

    #[test]
    fn the_counter_counts_characters_not_bytes_after_trimming() {
        let form = StudioForm {
            prompt: "  山水画 ".to_owned(),
            ..StudioForm::default()
        };
        assert_eq!(form.prompt_chars(), 3);
        assert!(!form.prompt_too_long());
        let long = StudioForm {
            prompt: "字".repeat(MAX_PROMPT_CHARS + 1),
            ..StudioForm::default()
        };
        assert!(long.prompt_too_long());
        let at_limit = StudioForm {
            prompt: "a".repeat(MAX_PROMPT_CHARS),
            ..StudioForm::default()
        };
        assert!(!at_limit.prompt_too_long());
    }

    #[test]
    fn reusing_settings_fills_prompt_seed_and_the_matching_chip() {
        let mut form = StudioForm {
            style: Some("ink".to_owned()),
            ..StudioForm::default()
        };
        let loras = [LoraChoice {
            name: "ink.safetensors".to_owned(),
            strength: 0.8,
        }];
        form.reuse("a lighthouse", 1234, 576, 1024, Some(&loras));
        assert_eq!(form.prompt, "a lighthouse");
        assert_eq!(form.seed, "1234");
        assert_eq!(form.aspect_ratio, Some(AspectRatio::Tall9x16));
        // The LoRAs come back; the style does not (the prompt is already the one it made).
        assert_eq!(
            form.loras,
            [FormLora {
                name: "ink.safetensors".to_owned(),
                strength: 80
            }]
        );
        assert_eq!(form.style, None);
        // An image the form just made leaves the form's LoRAs.
        form.reuse("x", 1, 512, 512, None);
        assert_eq!(form.loras.len(), 1);
    }

    #[test]
    fn reusing_a_size_no_chip_gives_keeps_the_current_chip() {
        let mut form = StudioForm {
            aspect_ratio: Some(AspectRatio::Landscape4x3),
            ..StudioForm::default()
        };
        form.reuse("x", 1, 512, 512, Some(&[]));
        assert_eq!(form.aspect_ratio, Some(AspectRatio::Landscape4x3));
    }

    #[test]
    fn lora_strengths_move_in_steps_of_five_hundredths_from_0_to_2() {
        assert_eq!(LoraStrength::from_input("0.85"), Some(85));
        assert_eq!(LoraStrength::from_input("0.87"), Some(85));
        assert_eq!(LoraStrength::from_input("2"), Some(200));
        assert_eq!(LoraStrength::from_input("7.5"), Some(200));
        assert_eq!(LoraStrength::from_input("0"), Some(0));
        assert_eq!(LoraStrength::from_input("x"), None);
        assert_eq!(LoraStrength::text(85), "0.85");
        assert_eq!(LoraStrength::text(150), "1.5");
        assert_eq!(LoraStrength::text_of(0.8), "0.8");
        assert_eq!(LoraStrength::text_of(-1.25), "-1.25");
        let lora = FormLora {
            name: "a".to_owned(),
            strength: 85,
        };
        assert_eq!(FormLora::from_choice(&lora.choice()), lora);
    }

    #[test]
    fn at_most_four_loras_each_once_and_a_style_brings_its_shape_and_loras() {
        let mut form = StudioForm::default();
        for name in ["a", "b", "a", "c", "d", "e"] {
            form.add_lora(name.to_owned());
        }
        let names: Vec<&str> = form.loras.iter().map(|lora| lora.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        let style = Style {
            id: "1".to_owned(),
            name: "ink".to_owned(),
            prompt_before: "ink of".to_owned(),
            prompt_after: String::new(),
            aspect_ratio: Some(AspectRatio::Wide16x9),
            loras: vec![LoraChoice {
                name: "ink.safetensors".to_owned(),
                strength: 1.25,
            }],
            updated_at_ms: 0,
        };
        form.apply_style(&style);
        form.prompt = "a heron".to_owned();
        let request = form.request(&EN, None).unwrap();
        assert_eq!(request.style.as_deref(), Some("ink"));
        assert_eq!(request.aspect_ratio, Some(AspectRatio::Wide16x9));
        assert_eq!(request.loras, style.loras);
        let saved = form.style_request("again".to_owned(), String::new(), "x".to_owned());
        assert_eq!(
            (saved.aspect_ratio, saved.loras),
            (style.aspect_ratio, style.loras)
        );
    }

    #[test]
    fn a_picked_lora_moves_and_goes_and_its_words_join_the_prompt() {
        let mut form = StudioForm::default();
        form.add_lora("a".to_owned());
        form.add_lora("b".to_owned());
        form.set_lora_strength("b", 85);
        form.set_lora_strength("missing", 10);
        form.set_lora_strength("a", 250);
        let strengths: Vec<(&str, u8)> = form
            .loras
            .iter()
            .map(|lora| (lora.name.as_str(), lora.strength))
            .collect();
        assert_eq!(strengths, [("a", 200), ("b", 85)]);
        form.remove_lora("a");
        assert_eq!(form.loras.len(), 1);
        form.add_words("wtrclr");
        assert_eq!(form.prompt, "wtrclr");
        form.prompt = "a fox ".to_owned();
        form.add_words("ink style");
        assert_eq!(form.prompt, "a fox, ink style");
    }

    #[test]
    fn gateway_errors_land_on_the_control_they_name() {
        let detail = |field: Option<&str>| ErrorDetail {
            code: "invalid".to_owned(),
            message: "Write a prompt first.".to_owned(),
            field: field.map(str::to_owned),
        };
        let error = FormError::from_detail(&detail(Some("prompt")));
        assert_eq!(error.message_for(Field::Prompt), Some("Write a prompt first."));
        assert_eq!(error.message_for(Field::Seed), None);
        assert_eq!(
            FormError::from_detail(&detail(Some("width"))).field,
            Some(Field::AspectRatio)
        );
        assert_eq!(FormError::from_detail(&detail(Some("batch_size"))).field, None);
        for field in [
            "source.picture",
            "source.strength",
            "source.mask",
            "picture",
            "mask",
        ] {
            assert_eq!(
                FormError::from_detail(&detail(Some(field))).field,
                Some(Field::Source)
            );
        }
        assert_eq!(FormError::from_detail(&detail(Some("sources"))).field, None);
        assert_eq!(FormError::from_detail(&detail(None)).field, None);
    }

    fn picture() -> SourcePicture {
        SourcePicture {
            id: "ab".repeat(32),
            width: 1024,
            height: 768,
        }
    }

    #[test]
    fn a_picture_sends_its_id_and_strength_and_no_size_unless_a_ratio_is_picked() {
        let mut form = StudioForm {
            prompt: "as a watercolour".to_owned(),
            ..StudioForm::default()
        };
        form.start_from(picture());
        let request = form.request(&EN, None).unwrap();
        assert_eq!(
            request.source,
            Some(SourceRequest {
                picture: "ab".repeat(32),
                strength: Some(0.6),
                mask: None,
            })
        );
        assert_eq!(
            (request.aspect_ratio, request.width, request.height),
            (None, None, None)
        );
        form.aspect_ratio = Some(AspectRatio::Tall9x16);
        let request = form.request(&EN, Some("cd".repeat(32))).unwrap();
        assert_eq!(request.aspect_ratio, Some(AspectRatio::Tall9x16));
        assert_eq!(request.source.unwrap().mask, Some("cd".repeat(32)));
        // The wire form the gateway reads.
        let json = serde_json::to_value(form.request(&EN, None).unwrap()).unwrap();
        assert_eq!(json["source"]["strength"], serde_json::json!(0.6_f32));
        assert!(json["source"].get("mask").is_none());
    }

    #[test]
    fn removing_the_picture_goes_back_to_a_ratio() {
        let mut form = StudioForm::default();
        form.start_from(picture());
        form.remove_source();
        let request = form.request(&EN, None).unwrap();
        assert_eq!(request.source, None);
        assert_eq!(request.aspect_ratio, Some(AspectRatio::Square));
        form.start_from(picture());
        form.aspect_ratio = Some(AspectRatio::Wide16x9);
        form.remove_source();
        assert_eq!(form.aspect_ratio, Some(AspectRatio::Wide16x9));
    }

    #[test]
    fn painting_makes_the_painted_part_anew_unless_a_strength_was_chosen() {
        let mut form = StudioForm::default();
        assert_eq!(form.strength, Strength::DEFAULT);
        form.painting_started();
        assert_eq!(form.strength.value(), 1.0);
        let mut chosen = StudioForm::default();
        chosen.choose_strength(Strength::from_value(0.4));
        chosen.painting_started();
        assert_eq!(chosen.strength.value(), 0.4);
    }

    #[test]
    fn strength_follows_the_range_input_in_steps_within_the_bounds() {
        assert_eq!(Strength::MIN, 20);
        assert_eq!(Strength::MAX, 100);
        assert_eq!(Strength::DEFAULT.value(), 0.6);
        assert_eq!(Strength::from_input("0.45"), Some(Strength(45)));
        assert_eq!(Strength::from_input("0.47"), Some(Strength(45)));
        assert_eq!(Strength::from_input("0.05"), Some(Strength(20)));
        assert_eq!(Strength::from_input("7"), Some(Strength(100)));
        assert_eq!(Strength::from_input("NaN"), None);
        assert_eq!(Strength::from_input("lots"), None);
        assert_eq!(Strength::from_input("."), None);
        assert_eq!(Strength::from_input("-0.5"), None);
        assert_eq!(Strength::from_input(".8"), Some(Strength(80)));
        assert_eq!(Strength::from_input("1"), Some(Strength(100)));
        assert_eq!(Strength::from_input("0.975"), Some(Strength(100)));
        assert_eq!(Strength::from_input("0.974"), Some(Strength(95)));
        assert_eq!(Strength::from_value(0.6), Strength(60));
        assert_eq!(Strength::from_value(0.33), Strength(35));
        assert_eq!(Strength::from_value(f32::NAN), Strength::DEFAULT);
        assert_eq!(Strength(35).input_value(), "0.35");
        assert_eq!(Strength(100).input_value(), "1");
        for hundredths in (20..=100).step_by(5) {
            let strength = Strength(hundredths);
            assert_eq!(Strength::from_input(&strength.input_value()), Some(strength));
        }
    }

    #[test]
    fn strength_is_said_in_words_from_a_little_to_everything() {
        let words = |hundredths| Strength(hundredths).words();
        assert_eq!(words(20), StrengthWords::ALittle);
        assert_eq!(words(35), StrengthWords::ALittle);
        assert_eq!(words(40), StrengthWords::Some);
        assert_eq!(words(60), StrengthWords::ALot);
        assert_eq!(words(80), StrengthWords::Most);
        assert_eq!(words(95), StrengthWords::Most);
        assert_eq!(words(100), StrengthWords::Everything);
        assert_eq!(Strength(60).value_text(&EN), "A lot may change (0.6)");
        assert!(Strength(100).value_text(&crate::i18n::ZH_CN).contains("全部"));
    }

    #[test]
    fn random_seeds_cover_the_whole_accepted_range() {
        assert_eq!(seed_from_random(0.0), 0);
        assert_eq!(seed_from_random(0.5), MAX_SEED.div_ceil(2));
        assert_eq!(seed_from_random(0.999_999_999_999_999_9), MAX_SEED);
        assert_eq!(seed_from_random(1.0), MAX_SEED);
    }
}
