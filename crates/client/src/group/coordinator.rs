//! Routing of group calls: every GroupService call except FindCoordinator (and ListGroups) goes
//! to the group's coordinator. The coordinator's address is cached per group; a node that is not
//! the coordinator answers NOT_COORDINATOR (naming the coordinator when it knows it) and the call
//! goes there at once; COORDINATOR_NOT_AVAILABLE and lost connections find the coordinator again
//! after a backoff.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use skein_proto::v1 as pb;
use skein_proto::v1::group_service_client::GroupServiceClient;
use tonic::transport::Channel;

use crate::cluster::{timed, Client};
use crate::error::{ClientError, Result};

/// The coordinator of one group, as far as the client knows.
#[derive(Debug)]
pub(crate) struct Coordinator {
    client: Client,
    group: String,
    /// (node id, client address) of the coordinator, once found.
    cached: Mutex<Option<(u64, String)>>,
}

/// Turns a response's `Error` field into an error (`Ok` when it says "no error").
pub(crate) fn check(what: &str, error: Option<&pb::Error>) -> Result<()> {
    match ClientError::from_partition_error(what, error) {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

impl Coordinator {
    pub(crate) fn new(client: Client, group: impl Into<String>) -> Self {
        Coordinator {
            client,
            group: group.into(),
            cached: Mutex::new(None),
        }
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn group(&self) -> &str {
        &self.group
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Option<(u64, String)>> {
        self.cached.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached coordinator (node id, address), if any.
    pub(crate) fn cached(&self) -> Option<(u64, String)> {
        self.cache().clone()
    }

    /// Forgets the cached coordinator: the next call finds it again.
    pub(crate) fn forget(&self) {
        *self.cache() = None;
    }

    /// Asks any node which node coordinates the group.
    pub(crate) async fn find(&self) -> Result<(u64, String)> {
        let what = format!("find the coordinator of group {}", self.group);
        let timeout = self.client.config().request_timeout;
        let request = pb::FindCoordinatorRequest {
            group: self.group.clone(),
        };
        let r = self
            .client
            .call_any(&what, |channel, addr| {
                let request = request.clone();
                let what = what.clone();
                async move {
                    let mut c = GroupServiceClient::new(channel);
                    timed(&what, &addr, timeout, c.find_coordinator(request)).await
                }
            })
            .await?;
        if r.node_id == 0 || r.client_addr.is_empty() {
            return Err(ClientError::CoordinatorNotAvailable { what });
        }
        let found = (r.node_id, r.client_addr);
        *self.cache() = Some(found.clone());
        Ok(found)
    }

    async fn current(&self) -> Result<(u64, String)> {
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        self.find().await
    }

    /// Updates the cache after a failed call. Returns true when the error named the coordinator
    /// (the next attempt may go there at once).
    fn on_error(&self, e: &ClientError) -> bool {
        match e {
            ClientError::NotCoordinator {
                coordinator: Some(h),
                ..
            } if !h.client_addr.is_empty() => {
                *self.cache() = Some((h.node_id, h.client_addr.clone()));
                true
            }
            ClientError::NotCoordinator { .. }
            | ClientError::CoordinatorNotAvailable { .. }
            | ClientError::Transport { .. }
            | ClientError::NoBrokerReachable { .. }
            | ClientError::Timeout { .. } => {
                self.forget();
                false
            }
            ClientError::Broker {
                code: crate::ErrorCode::NodeNotReady,
                ..
            } => {
                self.forget();
                false
            }
            _ => false,
        }
    }

    /// Runs `call` against the coordinator until it succeeds, fails with an error that is not
    /// retryable, or `retries` retries are used up. `call` gets a client for the coordinator and
    /// its address, and should turn an `Error` in the response into an `Err` (see [`check`]) so
    /// that NOT_COORDINATOR is followed wherever the coordinator reports it.
    pub(crate) async fn call<T, F, Fut>(&self, what: &str, retries: u32, call: F) -> Result<T>
    where
        F: FnMut(GroupServiceClient<Channel>, String) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.call_with(what, retries, true, call).await
    }

    /// Like [`Coordinator::call`]; with `idempotent` false only errors that say the request was
    /// not carried out (NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE, no coordinator found) are
    /// retried, not ambiguous ones (a timeout, a connection lost mid-call).
    pub(crate) async fn call_with<T, F, Fut>(
        &self,
        what: &str,
        retries: u32,
        idempotent: bool,
        mut call: F,
    ) -> Result<T>
    where
        F: FnMut(GroupServiceClient<Channel>, String) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut attempt = 0u32;
        loop {
            let mut sent = false;
            let result = match self.current().await {
                Ok((_, addr)) => match self.client.channel(&addr) {
                    Ok(channel) => {
                        sent = true;
                        call(GroupServiceClient::new(channel), addr).await
                    }
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            match result {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let redirected = self.on_error(&e);
                    let not_applied = !sent
                        || matches!(
                            e,
                            ClientError::NotCoordinator { .. }
                                | ClientError::CoordinatorNotAvailable { .. }
                        );
                    if !e.is_retryable() || attempt >= retries || !(idempotent || not_applied) {
                        return Err(e);
                    }
                    if !(redirected && attempt == 0) {
                        tokio::time::sleep(self.client.backoff(attempt)).await;
                    }
                    tracing::debug!(group = %self.group, attempt, error = %e, "{what}: retrying");
                    attempt += 1;
                }
            }
        }
    }

    /// The default retry budget of the client.
    pub(crate) fn retries(&self) -> u32 {
        self.client.config().max_retries
    }

    /// The client-side limit of an ordinary call.
    pub(crate) fn timeout(&self) -> Duration {
        self.client.config().request_timeout
    }
}
