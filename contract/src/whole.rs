//! Whole numbers in requests as JSON Schema counts them: `528` and `528.0` are the same integer (a
//! generator, or a client that keeps every number as a float, writes either), while a fraction, a
//! negative number or one out of range is still refused. Used with `deserialize_with` on the
//! requests' optional integer fields.

use serde::de::{self, Deserializer, Visitor};

/// An optional `u32` field.
pub fn option_u32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    let value = option_u64(deserializer)?;
    value
        .map(|value| u32::try_from(value).map_err(|_| de::Error::custom("a whole number up to 4294967295")))
        .transpose()
}

/// An optional `u64` field (floats are exact up to 2^53, the largest seed).
pub fn option_u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    deserializer.deserialize_option(OptionWhole)
}

struct OptionWhole;

impl<'de> Visitor<'de> for OptionWhole {
    type Value = Option<u64>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a whole number that is not negative")
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<u64>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<u64>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<u64>, D::Error> {
        deserializer.deserialize_any(Whole).map(Some)
    }
}

struct Whole;

impl Visitor<'_> for Whole {
    type Value = u64;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a whole number that is not negative")
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<u64, E> {
        Ok(value)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<u64, E> {
        u64::try_from(value).map_err(|_| E::invalid_value(de::Unexpected::Signed(value), &self))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<u64, E> {
        // 2^53: beyond it a float no longer says which integer it is.
        if value.fract() == 0.0 && (0.0..=9_007_199_254_740_992.0).contains(&value) {
            Ok(value as u64)
        } else {
            Err(E::invalid_value(de::Unexpected::Float(value), &self))
        }
    }
}

#[cfg(test)]
mod tests {
    #[derive(Debug, serde::Deserialize)]
    struct Fields {
        #[serde(default, deserialize_with = "super::option_u32")]
        side: Option<u32>,
        #[serde(default, deserialize_with = "super::option_u64")]
        seed: Option<u64>,
    }

    fn read(json: &str) -> Result<(Option<u32>, Option<u64>), String> {
        serde_json::from_str::<Fields>(json)
            .map(|fields| (fields.side, fields.seed))
            .map_err(|error| error.to_string())
    }

    #[test]
    fn a_whole_number_may_be_written_as_a_float_and_nothing_else_passes() {
        assert_eq!(read(r#"{"side": 528, "seed": 7}"#), Ok((Some(528), Some(7))));
        assert_eq!(read(r#"{"side": 528.0, "seed": 7.0}"#), Ok((Some(528), Some(7))));
        assert_eq!(read(r#"{}"#), Ok((None, None)));
        assert_eq!(read(r#"{"side": null}"#), Ok((None, None)));
        for refused in [
            r#"{"side": 528.5}"#,
            r#"{"side": -16}"#,
            r#"{"side": -16.0}"#,
            r#"{"side": 4294967296}"#,
            r#"{"side": "528"}"#,
            r#"{"seed": 1e300}"#,
            r#"{"seed": true}"#,
        ] {
            assert!(read(refused).is_err(), "{refused}");
        }
        assert_eq!(
            read(r#"{"seed": 9007199254740991}"#),
            Ok((None, Some(9_007_199_254_740_991)))
        );
    }
}
