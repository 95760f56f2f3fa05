//! Event relay: each job's events, numbered and kept, fanned out to every browser watching it.
//!
//! A job's log is short (a few dozen events), so it is kept whole: a browser that reconnects with
//! `Last-Event-ID`, or that falls behind the broadcast channel, catches up from the log instead of
//! losing events, and the stream always ends with the terminal event.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::broadcast;
use zimage_contract::JobEvent;

/// How many events a watcher may fall behind before it re-reads the log.
const CHANNEL_CAPACITY: usize = 64;
/// A job never needs more events than this; past it only the terminal event is kept, so a misbehaving
/// ComfyUI cannot grow memory without bound.
const MAX_EVENTS: usize = 512;

/// An event with its SSE id (1, 2, 3... within a job).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequenced {
    pub id: u64,
    pub event: JobEvent,
    /// The whole server-sent-events frame (`id:`, `event:` and `data:` lines, and the blank line that
    /// ends it), encoded once here: every watcher's connection sends these very bytes (a reference
    /// count, not a copy), where building the frame per watcher cost each of them an allocation and
    /// a scan of the data for every event.
    pub frame: Bytes,
}

impl Sequenced {
    fn new(id: u64, event: JobEvent) -> Sequenced {
        let frame = sse_frame(Some(id), event.name(), &event.data_json());
        Sequenced { id, event, frame }
    }
}

/// One server-sent-events frame. Each line of `data` gets its own `data:` field (the JSON of an event
/// has no line breaks, but a frame must never be cut short by one).
pub fn sse_frame(id: Option<u64>, name: &str, data: &str) -> Bytes {
    let mut frame = String::with_capacity(data.len() + name.len() + 32);
    if let Some(id) = id {
        frame.push_str("id: ");
        frame.push_str(&id.to_string());
        frame.push('\n');
    }
    frame.push_str("event: ");
    frame.push_str(name);
    frame.push('\n');
    for line in data.split('\n') {
        frame.push_str("data: ");
        frame.push_str(line.strip_suffix('\r').unwrap_or(line));
        frame.push('\n');
    }
    frame.push('\n');
    Bytes::from(frame)
}

/// One job's events so far, and the channel that announces new ones.
#[derive(Debug)]
pub struct EventLog {
    events: Vec<Arc<Sequenced>>,
    sender: broadcast::Sender<Arc<Sequenced>>,
    /// The id the first event gets.
    first_id: u64,
}

impl Default for EventLog {
    fn default() -> EventLog {
        EventLog::new()
    }
}

impl EventLog {
    /// An empty log whose ids start at 1.
    pub fn new() -> EventLog {
        EventLog::starting_at(1)
    }

    /// An empty log whose ids start at `first_id`. The engine starts every log of a run above the ids
    /// of earlier runs, so that a browser resuming with an id from before a restart misses nothing.
    pub fn starting_at(first_id: u64) -> EventLog {
        EventLog {
            events: Vec::new(),
            sender: broadcast::channel(CHANNEL_CAPACITY).0,
            first_id: first_id.max(1),
        }
    }

    /// A log that holds only a job's terminal event (with id `id`), for jobs known from the history.
    pub fn finished(event: JobEvent, id: u64) -> EventLog {
        let mut log = EventLog::starting_at(id);
        log.push(event);
        log
    }

    /// Appends an event and announces it. Nothing is appended after the terminal event.
    pub fn push(&mut self, event: JobEvent) -> Option<u64> {
        if self.is_finished() || (self.events.len() >= MAX_EVENTS && !event.is_terminal()) {
            return None;
        }
        let id = self.events.last().map_or(self.first_id, |last| last.id + 1);
        let sequenced = Arc::new(Sequenced::new(id, event));
        self.events.push(Arc::clone(&sequenced));
        // No receiver is fine: nobody is watching right now.
        let _ = self.sender.send(sequenced);
        Some(id)
    }

    /// True once the terminal event is in the log.
    pub fn is_finished(&self) -> bool {
        self.events.last().is_some_and(|last| last.event.is_terminal())
    }

    /// Every event with an id above `last_seen`.
    pub fn after(&self, last_seen: u64) -> Vec<Arc<Sequenced>> {
        let start = self.events.partition_point(|event| event.id <= last_seen);
        self.events[start..].to_vec()
    }

    /// Starts watching: what was missed after `last_seen` (everything when `None`), then live events.
    /// The log's one owner calls it, so no event falls between the two.
    ///
    /// An id this log never gave (beyond its last event, or from before its first: a browser that
    /// watched the job before a gateway restart, or a client making ids up) cannot say what was
    /// missed, so the watcher gets everything; trusting it would leave the stream waiting for ids that
    /// never come, open after the job's end.
    pub fn subscribe(&self, last_seen: Option<u64>) -> Subscription {
        let last_seen = match (last_seen, self.events.first(), self.events.last()) {
            (Some(seen), Some(first), Some(last))
                if seen.saturating_add(1) >= first.id && seen <= last.id =>
            {
                seen
            }
            _ => 0,
        };
        Subscription {
            backlog: self.after(last_seen).into(),
            receiver: (!self.is_finished()).then(|| self.sender.subscribe()),
            last_seen,
        }
    }
}

/// A watcher's position in a job's events.
#[derive(Debug)]
pub struct Subscription {
    backlog: VecDeque<Arc<Sequenced>>,
    receiver: Option<broadcast::Receiver<Arc<Sequenced>>>,
    last_seen: u64,
}

impl Subscription {
    /// The events as a stream that ends after the terminal event (or when the job is forgotten).
    /// `catch_up(last_seen)` re-reads the log (from whoever owns it) when the watcher fell behind the
    /// channel.
    pub fn into_stream<F, R>(self, catch_up: F) -> impl Stream<Item = Arc<Sequenced>> + Send + 'static
    where
        F: Fn(u64) -> R + Send + 'static,
        R: Future<Output = Vec<Arc<Sequenced>>> + Send,
    {
        futures_util::stream::unfold(
            (self, catch_up, false),
            |(mut subscription, catch_up, ended)| async move {
                if ended {
                    return None;
                }
                loop {
                    if let Some(next) = subscription.backlog.pop_front() {
                        if next.id <= subscription.last_seen {
                            continue;
                        }
                        subscription.last_seen = next.id;
                        let ended = next.event.is_terminal();
                        return Some((next, (subscription, catch_up, ended)));
                    }
                    let receiver = subscription.receiver.as_mut()?;
                    match receiver.recv().await {
                        Ok(next) => subscription.backlog.push_back(next),
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            subscription
                                .backlog
                                .extend(catch_up(subscription.last_seen).await);
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt as _;

    fn progress(step: u32) -> JobEvent {
        JobEvent::Progress { step, total: 8 }
    }

    fn ids(events: &[Arc<Sequenced>]) -> Vec<u64> {
        events.iter().map(|event| event.id).collect()
    }

    #[tokio::test]
    async fn a_watcher_gets_the_backlog_then_live_events_and_the_stream_ends_at_the_terminal_event() {
        let mut log = EventLog::new();
        log.push(JobEvent::Queued { position: 1 });
        log.push(JobEvent::Running {});
        let stream = log
            .subscribe(None)
            .into_stream(|_| std::future::ready(Vec::new()));
        log.push(progress(1));
        log.push(JobEvent::Cancelled {});
        let received: Vec<_> = stream.collect().await;
        assert_eq!(ids(&received), vec![1, 2, 3, 4]);
        assert_eq!(received[3].event, JobEvent::Cancelled {});
    }

    #[tokio::test]
    async fn resuming_after_an_id_gives_exactly_what_was_missed() {
        let mut log = EventLog::new();
        for step in 1..=5 {
            log.push(progress(step));
        }
        log.push(JobEvent::Failed {
            code: "x".to_owned(),
            message: "y".to_owned(),
        });
        let received: Vec<_> = log
            .subscribe(Some(3))
            .into_stream(|_| std::future::ready(Vec::new()))
            .collect()
            .await;
        assert_eq!(ids(&received), vec![4, 5, 6]);
    }

    #[tokio::test]
    async fn a_watcher_that_falls_behind_catches_up_from_the_log_without_gaps() {
        let log = Arc::new(std::sync::Mutex::new(EventLog::new()));
        let subscription = log.lock().unwrap().subscribe(None);
        for step in 0..(CHANNEL_CAPACITY as u32 * 3) {
            log.lock().unwrap().push(progress(step));
        }
        log.lock().unwrap().push(JobEvent::Cancelled {});
        let reader = Arc::clone(&log);
        let received: Vec<_> = subscription
            .into_stream(move |last_seen| std::future::ready(reader.lock().unwrap().after(last_seen)))
            .collect()
            .await;
        let expected: Vec<u64> = (1..=(CHANNEL_CAPACITY as u64 * 3 + 1)).collect();
        assert_eq!(ids(&received), expected);
    }

    #[test]
    fn each_event_is_one_whole_sse_frame_encoded_once() {
        let mut log = EventLog::starting_at(41);
        log.push(progress(3));
        let [event] = log.after(0).try_into().unwrap();
        assert_eq!(
            &event.frame[..],
            b"id: 41\nevent: progress\ndata: {\"step\":3,\"total\":8}\n\n"
        );
        // A line break in the data cannot end the frame early.
        assert_eq!(
            &sse_frame(None, "x", "a\r\nb\nc")[..],
            b"event: x\ndata: a\ndata: b\ndata: c\n\n"
        );
    }

    #[test]
    fn nothing_is_logged_after_the_terminal_event() {
        let mut log = EventLog::new();
        assert_eq!(log.push(JobEvent::Cancelled {}), Some(1));
        assert_eq!(log.push(progress(1)), None);
        assert!(log.is_finished());
    }

    #[test]
    fn a_flood_of_events_is_capped_but_the_terminal_event_still_gets_in() {
        let mut log = EventLog::new();
        for step in 0..(MAX_EVENTS as u32 + 100) {
            log.push(progress(step));
        }
        assert_eq!(log.after(0).len(), MAX_EVENTS);
        assert!(log.push(JobEvent::Cancelled {}).is_some());
    }

    #[tokio::test]
    async fn a_finished_log_from_history_yields_its_terminal_event_to_any_resuming_watcher() {
        let log = EventLog::finished(JobEvent::Cancelled {}, 5_000);
        for resumed_after in [None, Some(40), Some(4_999), Some(u64::MAX)] {
            let received: Vec<_> = log
                .subscribe(resumed_after)
                .into_stream(|_| std::future::ready(Vec::new()))
                .collect()
                .await;
            assert_eq!(ids(&received), vec![5_000], "{resumed_after:?}");
            assert!(received[0].event.is_terminal());
        }
    }

    #[tokio::test]
    async fn an_id_beyond_the_log_replays_everything_and_still_ends_with_the_job() {
        let mut log = EventLog::starting_at(100);
        log.push(JobEvent::Queued { position: 1 });
        log.push(JobEvent::Running {});
        let beyond = log
            .subscribe(Some(99_999_999))
            .into_stream(|_| std::future::ready(Vec::new()));
        let before = log
            .subscribe(Some(7))
            .into_stream(|_| std::future::ready(Vec::new()));
        log.push(progress(1));
        log.push(JobEvent::Cancelled {});
        let beyond: Vec<_> = beyond.collect().await;
        let before: Vec<_> = before.collect().await;
        assert_eq!(ids(&beyond), vec![100, 101, 102, 103]);
        assert_eq!(ids(&before), ids(&beyond));
    }

    #[test]
    fn ids_run_on_from_the_first_one() {
        let mut log = EventLog::starting_at(1_000_001);
        assert_eq!(log.push(progress(1)), Some(1_000_001));
        assert_eq!(log.push(progress(2)), Some(1_000_002));
        // The last id seen resumes exactly after it; the one before the first replays everything.
        let backlog = |seen| Vec::from(log.subscribe(Some(seen)).backlog);
        assert_eq!(ids(&backlog(1_000_001)), vec![1_000_002]);
        assert_eq!(ids(&backlog(1_000_000)), vec![1_000_001, 1_000_002]);
    }
}
