//! Download progress: a redrawn bar (bytes, rate, time left) on a terminal, plain log lines every few
//! seconds in container logs, nothing in tests.

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// One line redrawn in place on standard error (a terminal).
    Bar,
    /// A log line every few seconds (container logs, pipes).
    Lines,
    /// Nothing.
    Quiet,
}

impl ProgressMode {
    /// A bar when standard error is a terminal, log lines otherwise.
    pub fn detect() -> Self {
        if std::io::stderr().is_terminal() {
            Self::Bar
        } else {
            Self::Lines
        }
    }
}

/// How often each mode shows progress.
const BAR_REDRAW: Duration = Duration::from_millis(200);
const LINE_EVERY: Duration = Duration::from_secs(10);
/// The rate is a moving average over samples at least this far apart, so the estimate does not jitter.
const RATE_SAMPLE: Duration = Duration::from_millis(500);

/// The progress of one file.
#[derive(Debug)]
pub(crate) struct Progress {
    mode: ProgressMode,
    label: String,
    total: Option<u64>,
    done: u64,
    rate: Option<f64>,
    sample_at: Instant,
    sample_done: u64,
    shown_at: Option<Instant>,
    drawn: bool,
}

impl Progress {
    /// Starts showing the progress of `label`, `done` bytes of `total` already there.
    pub(crate) fn new(mode: ProgressMode, label: &str, total: Option<u64>, done: u64) -> Self {
        Self {
            mode,
            label: label.to_owned(),
            total,
            done,
            rate: None,
            sample_at: Instant::now(),
            sample_done: done,
            shown_at: None,
            drawn: false,
        }
    }

    /// The total became known (or changed).
    pub(crate) fn set_total(&mut self, total: Option<u64>) {
        if total.is_some() {
            self.total = total;
        }
    }

    /// The download starts over at `done` bytes (a server that ignored the range request).
    pub(crate) fn restart_at(&mut self, done: u64) {
        self.done = done;
        self.sample_done = done;
        self.sample_at = Instant::now();
    }

    /// `bytes` more arrived.
    pub(crate) fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        let now = Instant::now();
        let elapsed = now.duration_since(self.sample_at);
        if elapsed >= RATE_SAMPLE {
            let instant_rate = (self.done.saturating_sub(self.sample_done)) as f64 / elapsed.as_secs_f64();
            self.rate = Some(
                self.rate
                    .map_or(instant_rate, |rate| 0.7 * rate + 0.3 * instant_rate),
            );
            self.sample_at = now;
            self.sample_done = self.done;
        }
        let every = match self.mode {
            ProgressMode::Bar => BAR_REDRAW,
            ProgressMode::Lines => LINE_EVERY,
            ProgressMode::Quiet => return,
        };
        if self
            .shown_at
            .is_none_or(|shown| now.duration_since(shown) >= every)
        {
            self.shown_at = Some(now);
            self.show();
        }
    }

    /// The file is complete: the last state, and the end of the bar's line.
    pub(crate) fn finish(&mut self) {
        match self.mode {
            ProgressMode::Quiet => {}
            ProgressMode::Lines => self.show(),
            ProgressMode::Bar => {
                self.show();
                eprintln!();
                self.drawn = false;
            }
        }
    }

    /// Ends a drawn bar's line before something else is printed (a retry warning).
    pub(crate) fn interrupt(&mut self) {
        if self.drawn {
            eprintln!();
            self.drawn = false;
        }
    }

    fn show(&mut self) {
        let status = render_status(self.done, self.total, self.rate);
        match self.mode {
            ProgressMode::Quiet => {}
            ProgressMode::Lines => tracing::info!("{}: {status}", self.label),
            ProgressMode::Bar => {
                let fraction = self.total.map(|total| fraction(self.done, total));
                let bar = render_bar(fraction, 24);
                let mut stderr = std::io::stderr().lock();
                // `\r` + "erase line": the bar redraws itself in place.
                let _ = write!(stderr, "\r\x1b[2K{} {bar} {status}", self.label);
                let _ = stderr.flush();
                self.drawn = true;
            }
        }
    }
}

fn fraction(done: u64, total: u64) -> f64 {
    if total == 0 {
        1.0
    } else {
        (done as f64 / total as f64).clamp(0.0, 1.0)
    }
}

/// `1.20 GB of 7.22 GB (16%), 42.1 MB/s, 2m 23s left`, leaving out what is not known yet.
pub(crate) fn render_status(done: u64, total: Option<u64>, rate: Option<f64>) -> String {
    let mut status = match total {
        Some(total) => format!(
            "{} of {} ({:.0}%)",
            format_bytes(done),
            format_bytes(total),
            (fraction(done, total) * 100.0).floor()
        ),
        None => format_bytes(done),
    };
    if let Some(rate) = rate.filter(|rate| *rate >= 1.0) {
        status.push_str(&format!(", {}/s", format_bytes(rate as u64)));
        if let Some(total) = total {
            let left = Duration::from_secs_f64(total.saturating_sub(done) as f64 / rate);
            status.push_str(&format!(", {} left", format_duration(left)));
        }
    }
    status
}

/// `[#########...............]` of `width` cells; `[  ?  ]` shape when the total is not known.
pub(crate) fn render_bar(fraction: Option<f64>, width: usize) -> String {
    let Some(fraction) = fraction else {
        return format!("[{}]", "?".repeat(width));
    };
    let filled = ((fraction.clamp(0.0, 1.0) * width as f64).round() as usize).min(width);
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
}

/// Decimal units, as disk and download sizes are quoted: `335.3 MB`, `7.22 GB`.
pub(crate) fn format_bytes(bytes: u64) -> String {
    const UNITS: [(&str, f64); 4] = [("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)];
    let value = bytes as f64;
    for (unit, size) in UNITS {
        if value >= size {
            let scaled = value / size;
            return if scaled >= 100.0 {
                format!("{scaled:.0} {unit}")
            } else if scaled >= 10.0 {
                format!("{scaled:.1} {unit}")
            } else {
                format!("{scaled:.2} {unit}")
            };
        }
    }
    format!("{bytes} B")
}

/// `45s`, `3m 05s`, `1h 02m`.
pub(crate) fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if seconds < 60 {
        format!("{seconds}s")
    } else if seconds < 3600 {
        format!("{}m {:02}s", seconds / 60, seconds % 60)
    } else {
        format!("{}h {:02}m", seconds / 3600, (seconds % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_written_in_decimal_units_with_three_figures() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(999), "999 B");
        assert_eq!(format_bytes(335_304_388), "335 MB");
        assert_eq!(format_bytes(2_497_281_312), "2.50 GB");
        assert_eq!(format_bytes(7_220_000_000), "7.22 GB");
        assert_eq!(format_bytes(42_100_000), "42.1 MB");
    }

    #[test]
    fn durations_read_like_a_clock() {
        assert_eq!(format_duration(Duration::from_secs(45)), "45s");
        assert_eq!(format_duration(Duration::from_secs(185)), "3m 05s");
        assert_eq!(format_duration(Duration::from_secs(3720)), "1h 02m");
    }

    #[test]
    fn the_status_says_what_is_known() {
        assert_eq!(render_status(500, None, None), "500 B");
        assert_eq!(
            render_status(1_000_000_000, Some(4_000_000_000), None),
            "1.00 GB of 4.00 GB (25%)"
        );
        assert_eq!(
            render_status(1_000_000_000, Some(4_000_000_000), Some(50_000_000.0)),
            "1.00 GB of 4.00 GB (25%), 50.0 MB/s, 1m 00s left"
        );
    }

    #[test]
    fn the_bar_fills_in_proportion_and_never_overflows() {
        assert_eq!(render_bar(Some(0.0), 4), "[....]");
        assert_eq!(render_bar(Some(0.5), 4), "[##..]");
        assert_eq!(render_bar(Some(1.5), 4), "[####]");
        assert_eq!(render_bar(None, 3), "[???]");
    }

    #[test]
    fn quiet_progress_keeps_count_without_output() {
        let mut progress = Progress::new(ProgressMode::Quiet, "file", Some(10), 2);
        progress.advance(3);
        progress.restart_at(0);
        progress.advance(4);
        progress.finish();
        assert_eq!(progress.done, 4);
    }
}
