//! Order statistics of repeated measurements. These machines are noisy, so every number the suite
//! reports is a median or a tail percentile of many repeats, never a single run or a mean alone.

use std::time::Duration;

use serde::Serialize;

/// A sample of durations, summarised in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Summary {
    pub(crate) count: usize,
    pub(crate) min_ms: f64,
    pub(crate) median_ms: f64,
    pub(crate) p90_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

impl Summary {
    /// Summarises durations; `None` for an empty sample.
    pub(crate) fn of(durations: &[Duration]) -> Option<Summary> {
        let millis: Vec<f64> = durations
            .iter()
            .map(|duration| duration.as_secs_f64() * 1e3)
            .collect();
        Summary::of_millis(&millis)
    }

    /// Summarises values already in milliseconds; `None` for an empty sample.
    pub(crate) fn of_millis(values: &[f64]) -> Option<Summary> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|value| value.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        let (first, last) = (*sorted.first()?, *sorted.last()?);
        Some(Summary {
            count: sorted.len(),
            min_ms: first,
            median_ms: percentile(&sorted, 50.0),
            p90_ms: percentile(&sorted, 90.0),
            p99_ms: percentile(&sorted, 99.0),
            max_ms: last,
        })
    }
}

/// The nearest-rank percentile of a sorted, non-empty sample: the smallest value that at least
/// `percent` % of the sample does not exceed. The median of an even sample is the mean of the middle
/// two, as usual.
pub(crate) fn percentile(sorted: &[f64], percent: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    if percent == 50.0 && sorted.len().is_multiple_of(2) {
        let upper = sorted.len() / 2;
        return (sorted[upper - 1] + sorted[upper]) / 2.0;
    }
    let rank = (percent / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of unsorted values (NaN when empty).
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile(&sorted, 50.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_odd_sample_is_its_middle_value_and_of_an_even_one_the_mean_of_the_middle_two() {
        assert_eq!(median(&[5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn the_99th_percentile_is_the_nearest_rank() {
        let sorted: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 99.0), 198.0);
        assert_eq!(percentile(&sorted, 90.0), 180.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
    }

    #[test]
    fn a_summary_is_in_milliseconds_and_ignores_nothing_but_non_finite_values() {
        let summary = Summary::of(&[Duration::from_micros(1500), Duration::from_millis(3)]).unwrap();
        assert_eq!(summary.count, 2);
        assert_eq!(summary.min_ms, 1.5);
        assert_eq!(summary.max_ms, 3.0);
        assert_eq!(summary.median_ms, 2.25);
        assert_eq!(Summary::of_millis(&[f64::NAN, 2.0]).unwrap().count, 1);
        assert!(Summary::of(&[]).is_none());
    }
}
