//! A cap on the event streams one client address holds open at once: each stream is a connection
//! and a task, and a browser needs one per job it shows.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Counts open streams per client address.
#[derive(Debug, Clone)]
pub struct StreamCounter {
    limit: Option<usize>,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One open stream; dropping it (when the response body is dropped) frees the place.
#[derive(Debug)]
pub struct StreamPermit {
    client: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl StreamCounter {
    /// At most `limit` streams per client address; `None` for no cap.
    pub fn new(limit: Option<usize>) -> StreamCounter {
        StreamCounter {
            limit,
            open: Arc::default(),
        }
    }

    /// A place for one more stream of `client`, unless it holds its limit already.
    pub fn try_open(&self, client: IpAddr) -> Option<StreamPermit> {
        let mut open = lock(&self.open);
        let count = open.entry(client).or_insert(0);
        if self.limit.is_some_and(|limit| *count >= limit) {
            return None;
        }
        *count += 1;
        Some(StreamPermit {
            client,
            open: Arc::clone(&self.open),
        })
    }

    /// Streams `client` holds open now.
    pub fn open_for(&self, client: IpAddr) -> usize {
        lock(&self.open).get(&client).copied().unwrap_or(0)
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = lock(&self.open);
        if let Some(count) = open.get_mut(&self.client) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}

fn lock(open: &Mutex<HashMap<IpAddr, usize>>) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
    // Counts stay counts even if a holder panicked.
    open.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_holds_at_most_its_limit_and_dropping_frees_a_place() {
        let counter = StreamCounter::new(Some(2));
        let phone: IpAddr = "192.168.1.30".parse().unwrap();
        let laptop: IpAddr = "192.168.1.31".parse().unwrap();
        let first = counter.try_open(phone).unwrap();
        let _second = counter.try_open(phone).unwrap();
        assert!(counter.try_open(phone).is_none());
        assert!(counter.try_open(laptop).is_some());
        drop(first);
        assert_eq!(counter.open_for(phone), 1);
        assert!(counter.try_open(phone).is_some());
    }

    #[test]
    fn counts_are_forgotten_when_the_last_stream_closes() {
        let counter = StreamCounter::new(None);
        let phone: IpAddr = "192.168.1.30".parse().unwrap();
        let permits: Vec<_> = (0..100).map(|_| counter.try_open(phone).unwrap()).collect();
        assert_eq!(counter.open_for(phone), 100);
        drop(permits);
        assert!(counter.open.lock().unwrap().is_empty());
    }
}
