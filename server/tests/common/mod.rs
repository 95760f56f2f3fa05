//! What every integration test crate shares: the one way to wait for something that has no event of
//! its own. (Included by `tests/api` and `tests/crash.rs`; cargo builds no test of its own from here.)

use std::future::Future;
use std::time::Duration;

/// How often [`poll_within`] looks again: quick enough not to slow a test, slow enough not to load the
/// gateway under test.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// Asks `check` until it answers `Some`, failing the test (naming `what`) once `limit` has passed.
pub(crate) async fn poll_within<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting after {limit:?}: {what}"
        );
        tokio::time::sleep(POLL_EVERY).await;
    }
}
