//! Blocking file I/O off the async worker threads.
//!
//! Every group of a node shares the runtime's few worker threads, which also send the
//! heartbeats. An fsync, a truncation, a segment deletion or a snapshot write that ran on one of
//! them would stall every group on that thread behind a slow disk, so such work runs through
//! [`run`] on tokio's blocking pool instead (`spawn_blocking`; not `block_in_place`, which panics
//! on a current-thread runtime).
//!
//! The functions that do such I/O call [`debug_assert_may_block`] first: in a debug build it
//! panics when one of them runs on an async worker, so every test that reaches them checks the
//! rule.

use std::cell::Cell;

use crate::error::{Error, Result};

thread_local! {
    /// True while this thread runs a closure given to [`run`].
    static IN_BLOCKING_RUN: Cell<bool> = const { Cell::new(false) };
}

/// Marks the current thread as running blocking work until dropped (also on a panic).
struct BlockingRunMark;

impl BlockingRunMark {
    fn enter() -> Self {
        IN_BLOCKING_RUN.with(|m| m.set(true));
        BlockingRunMark
    }
}

impl Drop for BlockingRunMark {
    fn drop(&mut self) {
        IN_BLOCKING_RUN.with(|m| m.set(false));
    }
}

/// Runs `f` on tokio's blocking pool, inside the caller's tracing span, and returns its result.
///
/// `what` names the work for the error returned when `f` panics or the runtime shuts down before
/// it ran. Once started, `f` runs to its end even when the caller's future is dropped, so `f`
/// must leave memory and disk consistent by itself: update the in-memory state in the same
/// closure as the file it mirrors.
pub(crate) async fn run<R: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> Result<R> + Send + 'static,
) -> Result<R> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _span = span.enter();
        let _mark = BlockingRunMark::enter();
        f()
    })
    .await
    .map_err(|e| {
        Error::io(
            format!("{what} on a blocking thread"),
            std::io::Error::other(e.to_string()),
        )
    })?
}

/// Checks, in debug builds, that blocking file I/O named `what` may run on this thread: inside
/// [`run`], or on a thread outside any tokio runtime (a plain test, a tool). Panics when it would
/// run on an async worker thread.
#[track_caller]
pub(crate) fn debug_assert_may_block(what: &str) {
    debug_assert!(
        IN_BLOCKING_RUN.with(Cell::get) || tokio::runtime::Handle::try_current().is_err(),
        "{what} would block an async worker thread: run it through blocking::run"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn run_marks_only_its_own_closure() {
        assert!(!IN_BLOCKING_RUN.with(Cell::get));
        let inside = run("test", || Ok(IN_BLOCKING_RUN.with(Cell::get)))
            .await
            .expect("run");
        assert!(inside);
        assert!(!IN_BLOCKING_RUN.with(Cell::get));
    }

    #[tokio::test]
    async fn a_panic_in_the_closure_is_a_typed_error() {
        let r: Result<()> = run("explode", || panic!("boom")).await;
        assert!(
            matches!(&r, Err(Error::Io { action, .. }) if action.contains("explode")),
            "{r:?}"
        );
        // The thread's mark was cleared by the unwinding guard; a later run sees a clean slate.
        let inside = run("test", || Ok(IN_BLOCKING_RUN.with(Cell::get)))
            .await
            .expect("run");
        assert!(inside);
    }

    #[test]
    fn file_io_outside_a_runtime_is_allowed() {
        debug_assert_may_block("plain thread");
    }

    #[cfg(debug_assertions)]
    #[tokio::test]
    #[should_panic(expected = "would block an async worker thread")]
    async fn file_io_on_an_async_worker_is_caught() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _ = crate::files::write_atomic(&dir.path().join("vote"), b"x");
    }
}
