//! The scheduler's two decisions, as pure functions of plain values: which waiting job goes next (fair
//! share between clients) and which backend gets it. The engine (`mod.rs`) owns the state and calls
//! these; nothing here does I/O or reads a clock.
//!
//! **Fair share** is start-time fair queueing with every job costing one: each job gets a tag when it
//! joins the line, one past the later of the line's virtual time and its client's previous tag, and the
//! line is served in tag order (ties by age). For jobs of equal cost this is round-robin between
//! clients (a deficit round-robin with a quantum of one job): a phone with ten jobs queued gets tags
//! `v+1 … v+10`, a second person's single job gets `v+1` and goes second, not eleventh. Tags never
//! change once given, so the line is one sorted set and every watcher's place in it is its index; a job
//! sent back to the line (its backend was lost) keeps its tag and so its turn.
//!
//! **Backend choice**: among the backends that can take a job now, the one with the lowest measured
//! median time per image, a backend not measured yet counting as the fastest (so each is measured
//! early), then the one idle longest. When the line is longer than the idle backends, every backend is
//! busy anyway and the choice changes nothing; it matters when one job meets several idle backends,
//! and then the person waiting is best served by the fastest card. BENCHMARKS.md has the numbers.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// The fair-share bookkeeping: the line's virtual time and each client's last tag.
#[derive(Debug, Clone)]
pub struct FairShare<C> {
    /// The tag of the job dispatched last.
    virtual_time: u64,
    /// Each client's latest tag, while it is ahead of the virtual time.
    last_tag: HashMap<C, u64>,
}

impl<C: Eq + Hash> Default for FairShare<C> {
    fn default() -> FairShare<C> {
        FairShare {
            virtual_time: 0,
            last_tag: HashMap::new(),
        }
    }
}

impl<C: Eq + Hash> FairShare<C> {
    /// The tag of a job `client` adds to the line now.
    pub fn tag(&mut self, client: C) -> u64 {
        let last = self.last_tag.get(&client).copied().unwrap_or(0);
        let tag = last.max(self.virtual_time).saturating_add(1);
        self.last_tag.insert(client, tag);
        tag
    }

    /// A job with `tag` left the line for a backend: the virtual time moves up to it, and clients with
    /// nothing ahead of it are forgotten (so the map holds only clients with jobs in line).
    pub fn served(&mut self, tag: u64) {
        if tag > self.virtual_time {
            self.virtual_time = tag;
            let now = self.virtual_time;
            self.last_tag.retain(|_, last| *last > now);
        }
    }
}

/// What the scheduler knows of one backend when a job is to be placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Connected, its probe passed, holds none of our jobs and is not cooling down after a failure.
    pub available: bool,
    /// Median time per image of its recent jobs; `None` before its first.
    pub median: Option<Duration>,
    /// Since when it has held no job.
    pub idle_since: Instant,
}

/// The backend (index into `candidates`) that gets the next job, if any can take one.
pub fn pick_backend(candidates: &[Candidate]) -> Option<usize> {
    candidates
        .iter()
        .enumerate()
        .filter(|(_, candidate)| candidate.available)
        .min_by_key(|(_, candidate)| (candidate.median.unwrap_or(Duration::ZERO), candidate.idle_since))
        .map(|(index, _)| index)
}

/// The median of recent times per image.
pub fn median(samples: impl IntoIterator<Item = Duration>) -> Option<Duration> {
    let mut samples: Vec<Duration> = samples.into_iter().collect();
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let middle = samples.len() / 2;
    Some(if samples.len() % 2 == 1 {
        samples[middle]
    } else {
        (samples[middle - 1] + samples[middle]) / 2
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Serves a line of `(client, arrival)` jobs, all queued before the first dispatch, in tag order.
    fn order(arrivals: &[&'static str]) -> Vec<&'static str> {
        let mut fair = FairShare::default();
        let line: BTreeSet<(u64, usize)> = arrivals
            .iter()
            .enumerate()
            .map(|(age, client)| (fair.tag(*client), age))
            .collect();
        line.iter().map(|(_, age)| arrivals[*age]).collect()
    }

    #[test]
    fn one_client_is_served_in_order() {
        assert_eq!(order(&["a", "a", "a"]), ["a", "a", "a"]);
    }

    #[test]
    fn a_single_job_does_not_wait_behind_anothers_ten() {
        let mut arrivals = vec!["phone"; 10];
        arrivals.push("desk");
        let served = order(&arrivals);
        assert_eq!(served[0], "phone");
        assert_eq!(served[1], "desk", "{served:?}");
    }

    #[test]
    fn clients_take_turns() {
        assert_eq!(
            order(&["a", "a", "a", "b", "b", "c"]),
            ["a", "b", "c", "a", "b", "a"]
        );
    }

    #[test]
    fn a_client_arriving_later_joins_the_current_round_not_an_old_one() {
        let mut fair = FairShare::default();
        let a1 = fair.tag("a");
        let a2 = fair.tag("a");
        let a3 = fair.tag("a");
        fair.served(a1);
        fair.served(a2);
        // `b` arrives after two of `a`'s jobs ran: it is next, not ahead of what already ran.
        let b1 = fair.tag("b");
        assert!(b1 > a2);
        assert_eq!(b1, a3, "b shares a's current round; age breaks the tie");
        // A client that comes back after being idle does not get credit for its idle time.
        fair.served(a3);
        fair.served(b1);
        let a4 = fair.tag("a");
        let b2 = fair.tag("b");
        assert_eq!(a4, b2);
    }

    #[test]
    fn served_clients_are_forgotten() {
        let mut fair = FairShare::default();
        let tags: Vec<u64> = (0..100).map(|client| fair.tag(client)).collect();
        for tag in tags {
            fair.served(tag);
        }
        assert!(fair.last_tag.is_empty());
    }

    fn candidate(available: bool, median_ms: Option<u64>, idle_for_s: u64) -> Candidate {
        let now = Instant::now() + Duration::from_secs(1000);
        Candidate {
            available,
            median: median_ms.map(Duration::from_millis),
            idle_since: now - Duration::from_secs(idle_for_s),
        }
    }

    #[test]
    fn no_available_backend_gets_nothing() {
        assert_eq!(pick_backend(&[]), None);
        assert_eq!(pick_backend(&[candidate(false, None, 9)]), None);
    }

    #[test]
    fn the_fastest_available_backend_wins_and_an_unmeasured_one_is_tried() {
        let backends = [
            candidate(true, Some(4000), 50),
            candidate(false, Some(1000), 50),
            candidate(true, Some(2500), 1),
        ];
        assert_eq!(pick_backend(&backends), Some(2));
        let with_new = [backends[0], backends[2], candidate(true, None, 0)];
        assert_eq!(pick_backend(&with_new), Some(2));
    }

    #[test]
    fn among_equals_the_longest_idle_wins() {
        let backends = [
            candidate(true, Some(3000), 5),
            candidate(true, Some(3000), 30),
            candidate(true, Some(3000), 10),
        ];
        assert_eq!(pick_backend(&backends), Some(1));
    }

    #[test]
    fn the_median_of_odd_and_even_counts() {
        let ms = |values: &[u64]| median(values.iter().map(|ms| Duration::from_millis(*ms)));
        assert_eq!(ms(&[]), None);
        assert_eq!(ms(&[30, 10, 20]), Some(Duration::from_millis(20)));
        assert_eq!(ms(&[40, 10, 20, 30]), Some(Duration::from_millis(25)));
    }
}
