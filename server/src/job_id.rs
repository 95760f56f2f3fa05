//! Job ids: opaque, time-ordered (UUID v7) and minted by the gateway. The same id names the job, its
//! ComfyUI prompt, its image and its history record; a client-supplied string is only ever parsed
//! into this type, never used as a path or a name.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// A job's id. Ordering follows creation time, which the history uses for "newest first".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(Uuid);

impl JobId {
    /// Below every id, for ranges.
    pub const MIN: JobId = JobId(Uuid::nil());
    /// Above every id, for ranges.
    pub const MAX: JobId = JobId(Uuid::max());

    /// A fresh id, later than every id made before in this process.
    pub fn new() -> JobId {
        JobId(Uuid::now_v7())
    }

    /// The id made at `unix_ms` with these random bits: for the simulation test's replayable ids.
    pub fn from_parts(unix_ms: u64, random: [u8; 10]) -> JobId {
        JobId(uuid::Builder::from_unix_timestamp_millis(unix_ms, &random).into_uuid())
    }

    /// Milliseconds since the Unix epoch at which the id was made.
    pub fn created_at_ms(self) -> u64 {
        self.0
            .get_timestamp()
            .map(|timestamp| timestamp.to_unix())
            .map_or(0, |(seconds, nanos)| {
                seconds
                    .saturating_mul(1000)
                    .saturating_add(u64::from(nanos / 1_000_000))
            })
    }
}

impl Default for JobId {
    fn default() -> JobId {
        JobId::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.as_hyphenated().fmt(formatter)
    }
}

/// The text was not a job id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a job id")]
pub struct InvalidJobId;

impl FromStr for JobId {
    type Err = InvalidJobId;

    /// Accepts only the hyphenated form the gateway hands out.
    fn from_str(text: &str) -> Result<JobId, InvalidJobId> {
        if text.len() != 36 {
            return Err(InvalidJobId);
        }
        Uuid::try_parse(text).map(JobId).map_err(|_| InvalidJobId)
    }
}

impl TryFrom<String> for JobId {
    type Error = InvalidJobId;

    fn try_from(text: String) -> Result<JobId, InvalidJobId> {
        text.parse()
    }
}

impl From<JobId> for String {
    fn from(id: JobId) -> String {
        id.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids_round_trip_and_order_by_creation() {
        let first = JobId::new();
        let second = JobId::new();
        assert!(first < second);
        assert_eq!(first.to_string().parse::<JobId>().unwrap(), first);
        assert!(first.created_at_ms() > 1_700_000_000_000);
    }

    #[test]
    fn paths_and_other_spellings_are_not_ids() {
        for text in [
            "../../etc/passwd",
            "",
            "0",
            "{0190f1d2-5a0b-7c3e-8f00-000000000000}",
            "0190f1d25a0b7c3e8f00000000000000",
        ] {
            assert_eq!(text.parse::<JobId>(), Err(InvalidJobId), "{text}");
        }
    }

    proptest! {
        #[test]
        fn only_the_hyphenated_form_parses_and_it_round_trips(text in any::<String>()) {
            if let Ok(id) = text.parse::<JobId>() {
                prop_assert!(id.to_string().eq_ignore_ascii_case(&text), "{text} became {id}");
            }
        }

        #[test]
        fn every_minted_id_parses_back_to_itself(upper in any::<bool>()) {
            let id = JobId::new();
            let text = if upper { id.to_string().to_uppercase() } else { id.to_string() };
            prop_assert_eq!(text.parse::<JobId>(), Ok(id));
        }
    }
}
