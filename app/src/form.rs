//! The generate form as plain data: prompt, seed and aspect ratio, the request they make, and the
//! field errors shown beside them.
//!
//! The gateway is the judge of what is valid (its message is what people read); the form only refuses
//! what cannot even be sent, such as a seed that is not a number.

use crate::api::{AspectRatio, CreateJobRequest, ErrorDetail, MAX_PROMPT_CHARS, MAX_SEED};
use crate::i18n::Ui;

/// The controls of the form, as typed by the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StudioForm {
    /// The prompt as typed (trimmed only when sent).
    pub prompt: String,
    /// The seed field as typed; empty means "a random seed for each image".
    pub seed: String,
    /// The chosen aspect ratio chip.
    pub aspect_ratio: AspectRatio,
}

impl Default for StudioForm {
    fn default() -> Self {
        StudioForm {
            prompt: String::new(),
            seed: String::new(),
            aspect_ratio: AspectRatio::Square,
        }
    }
}

/// A control of the form an error can point at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Prompt,
    Seed,
    AspectRatio,
}

impl Field {
    /// Maps the `field` of a gateway error (the request's JSON key) to the control that shows it.
    pub fn from_wire(name: &str) -> Option<Field> {
        match name {
            "prompt" => Some(Field::Prompt),
            "seed" => Some(Field::Seed),
            // Sizes are chosen through the ratio chips, so size errors belong to them.
            "aspect_ratio" | "width" | "height" => Some(Field::AspectRatio),
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

    /// The body of `POST /api/jobs`. The prompt goes as typed: the gateway trims it and explains what
    /// is wrong with it.
    pub fn request(&self, ui: &Ui) -> Result<CreateJobRequest, FormError> {
        Ok(CreateJobRequest {
            prompt: self.prompt.clone(),
            seed: self.seed(ui)?,
            aspect_ratio: Some(self.aspect_ratio),
            ..CreateJobRequest::default()
        })
    }

    /// Fixes the seed to `seed` (the dice and "reuse seed").
    pub fn fix_seed(&mut self, seed: u64) {
        self.seed = seed.to_string();
    }

    /// Fills the form from an earlier image ("reuse settings"). A size that no chip gives keeps the
    /// current chip.
    pub fn reuse(&mut self, prompt: &str, seed: u64, width: u32, height: u32) {
        prompt.clone_into(&mut self.prompt);
        self.fix_seed(seed);
        if let Some(ratio) = ratio_of_size(width, height) {
            self.aspect_ratio = ratio;
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
        assert_eq!(form.request(&EN).unwrap().seed, Some(42));
        form.seed = MAX_SEED.to_string();
        assert_eq!(form.seed(&EN), Ok(Some(MAX_SEED)));
        form.seed = (MAX_SEED + 1).to_string();
        assert_eq!(form.request(&EN).unwrap_err().field, Some(Field::Seed));
        form.seed = "-3".to_owned();
        assert_eq!(form.seed(&EN).unwrap_err().field, Some(Field::Seed));
        form.seed = "twelve".to_owned();
        assert!(form.seed(&EN).is_err());
    }

    #[test]
    fn the_request_carries_the_prompt_as_typed_and_the_chosen_ratio() {
        let form = StudioForm {
            prompt: " 一只猫 ".to_owned(),
            seed: String::new(),
            aspect_ratio: AspectRatio::Wide16x9,
        };
        let request = form.request(&EN).unwrap();
        assert_eq!(request.prompt, " 一只猫 ");
        assert_eq!(request.aspect_ratio, Some(AspectRatio::Wide16x9));
        assert_eq!(
            (request.seed, request.width, request.height, request.batch_size),
            (None, None, None, None)
        );
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
        let mut form = StudioForm::default();
        form.reuse("a lighthouse", 1234, 576, 1024);
        assert_eq!(form.prompt, "a lighthouse");
        assert_eq!(form.seed, "1234");
        assert_eq!(form.aspect_ratio, AspectRatio::Tall9x16);
    }

    #[test]
    fn reusing_a_size_no_chip_gives_keeps_the_current_chip() {
        let mut form = StudioForm {
            aspect_ratio: AspectRatio::Landscape4x3,
            ..StudioForm::default()
        };
        form.reuse("x", 1, 512, 512);
        assert_eq!(form.aspect_ratio, AspectRatio::Landscape4x3);
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
        assert_eq!(FormError::from_detail(&detail(None)).field, None);
    }

    #[test]
    fn random_seeds_cover_the_whole_accepted_range() {
        assert_eq!(seed_from_random(0.0), 0);
        assert_eq!(seed_from_random(0.5), MAX_SEED.div_ceil(2));
        assert_eq!(seed_from_random(0.999_999_999_999_999_9), MAX_SEED);
        assert_eq!(seed_from_random(1.0), MAX_SEED);
    }
}
