//! Delivery notification per batch, not per record.
//!
//! Every record of a batch shares one [`Completion`]: the sender resolves it once with the
//! batch's base offset (or an error), and each record's [`DeliveryFuture`] reads it with the
//! record's index in the batch. A record costs a reference-count increment here instead of a
//! channel allocation and a `RecordMetadata` message (a per-record `oneshot` was the largest
//! single cost of `send` in the profile).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

use crate::error::{ClientError, Result};
use crate::record::RecordMetadata;

/// What a batch's records wait for.
#[derive(Debug)]
struct BatchOutcome {
    topic: Arc<str>,
    partition: u32,
    /// The base offset of the batch, or why it failed. Set once.
    outcome: OnceLock<std::result::Result<u64, ClientError>>,
    /// Futures polled before the outcome was set.
    wakers: Mutex<Vec<Waker>>,
}

/// The producer's side of a batch's delivery. Resolving it wakes every waiting record;
/// dropping it unresolved (the producer went away) fails them with
/// [`ClientError::ProducerClosed`].
#[derive(Debug)]
pub(crate) struct Completion {
    shared: Arc<BatchOutcome>,
}

impl Completion {
    pub(crate) fn new(topic: Arc<str>, partition: u32) -> Self {
        Completion {
            shared: Arc::new(BatchOutcome {
                topic,
                partition,
                outcome: OnceLock::new(),
                wakers: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The future of the record at `index` in the batch.
    pub(crate) fn future(&self, index: u32, timestamp: i64) -> DeliveryFuture {
        DeliveryFuture {
            batch: self.shared.clone(),
            index,
            timestamp,
        }
    }

    /// The batch was written with its first record at `base_offset`.
    pub(crate) fn complete(&self, base_offset: u64) {
        self.set(Ok(base_offset));
    }

    /// The batch failed for good.
    pub(crate) fn fail(&self, err: &ClientError) {
        self.set(Err(err.clone()));
    }

    /// The first outcome wins; later ones are ignored.
    fn set(&self, outcome: std::result::Result<u64, ClientError>) {
        if self.shared.outcome.set(outcome).is_err() {
            return;
        }
        // Set before the lock is taken: a poller that saw no outcome under the lock has its
        // waker in the list by now.
        let wakers =
            std::mem::take(&mut *self.shared.wakers.lock().unwrap_or_else(|p| p.into_inner()));
        for w in wakers {
            w.wake();
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if self.shared.outcome.get().is_none() {
            self.set(Err(ClientError::ProducerClosed));
        }
    }
}

/// Resolves to where a record was written once its batch is acknowledged, or to the error that
/// made the producer give up on it (after its retries).
///
/// The records of a batch share one completion, so resolving a batch of a thousand records
/// costs one store and one wake-up per waiting task, not a message per record.
#[derive(Debug)]
#[must_use = "a record's delivery can fail: await the future to learn its offset or error"]
pub struct DeliveryFuture {
    batch: Arc<BatchOutcome>,
    index: u32,
    timestamp: i64,
}

impl DeliveryFuture {
    /// The partition the record was appended to (known as soon as `send` returns).
    pub fn partition(&self) -> u32 {
        self.batch.partition
    }

    /// The topic of the record.
    pub fn topic(&self) -> &str {
        &self.batch.topic
    }

    fn resolve(&self, outcome: &std::result::Result<u64, ClientError>) -> Result<RecordMetadata> {
        match outcome {
            Ok(base) => Ok(RecordMetadata {
                topic: self.batch.topic.clone(),
                partition: self.batch.partition,
                offset: base + u64::from(self.index),
                timestamp: self.timestamp,
            }),
            Err(e) => Err(e.clone()),
        }
    }
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(o) = self.batch.outcome.get() {
            return Poll::Ready(self.resolve(o));
        }
        let mut wakers = self.batch.wakers.lock().unwrap_or_else(|p| p.into_inner());
        // Checked again under the lock: `Completion::set` stores the outcome, then drains the
        // wakers under this lock.
        if let Some(o) = self.batch.outcome.get() {
            drop(wakers);
            return Poll::Ready(self.resolve(o));
        }
        if !wakers.last().is_some_and(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt as _;

    #[test]
    fn every_record_of_a_batch_resolves_with_its_own_offset() {
        let c = Completion::new("t".into(), 2);
        let a = c.future(0, 10);
        let b = c.future(1, 11);
        let mut a = Box::pin(a);
        assert!(a.as_mut().now_or_never().is_none(), "not resolved yet");
        c.complete(40);
        let a = a.now_or_never().expect("ready").expect("ok");
        let b = b.now_or_never().expect("ready").expect("ok");
        assert_eq!(
            (&*a.topic, a.partition, a.offset, a.timestamp),
            ("t", 2, 40, 10)
        );
        assert_eq!((b.offset, b.timestamp), (41, 11));
        c.fail(&ClientError::ProducerClosed);
        let again = c.future(1, 11).now_or_never().expect("ready").expect("ok");
        assert_eq!(again.offset, 41, "the first outcome wins");
    }

    #[test]
    fn dropping_an_unresolved_completion_fails_its_records() {
        let c = Completion::new("t".into(), 0);
        let f = c.future(0, 1);
        drop(c);
        assert!(matches!(
            f.now_or_never().expect("ready"),
            Err(ClientError::ProducerClosed)
        ));
    }

    #[tokio::test]
    async fn a_waiting_task_is_woken() {
        let c = Completion::new("t".into(), 0);
        let f = c.future(3, 1);
        let waiter = tokio::spawn(f);
        tokio::task::yield_now().await;
        c.complete(7);
        let m = waiter.await.expect("joined").expect("ok");
        assert_eq!(m.offset, 10);
    }
}
