//! The listener: accepts connections (up to `connections_max`), reads frames, runs requests and
//! writes responses strictly in request order.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{FuturesOrdered, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

use crate::backend::Backend;
use crate::config::{ConfigError, KafkaConfig};
use crate::frame::FrameReader;
use crate::handlers;
use crate::request::{decode_request, DecodedRequest};
use crate::KafkaError;

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves Kafka clients on `listener` until `shutdown` completes, then stops accepting, lets each
/// connection finish the requests it has read, and returns once every connection is closed.
pub async fn serve<B: Backend>(
    listener: TcpListener,
    backend: Arc<B>,
    config: KafkaConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ConfigError> {
    config.validate()?;
    let config = Arc::new(config);
    let slots = Arc::new(Semaphore::new(config.connections_max));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                        tracing::warn!(%peer, limit = config.connections_max, "kafka connection limit reached; closing the new connection");
                        continue;
                    };
                    let (backend, config, stop) = (Arc::clone(&backend), Arc::clone(&config), stop_rx.clone());
                    let span = tracing::info_span!("kafka_connection", %peer);
                    connections.spawn(
                        async move {
                            connection(stream, peer, backend, &config, stop).await;
                            drop(slot);
                        }
                        .instrument(span),
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept kafka connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// One connection; logs why it ended.
async fn connection<B: Backend>(
    stream: TcpStream,
    peer: SocketAddr,
    backend: Arc<B>,
    config: &KafkaConfig,
    stop: watch::Receiver<bool>,
) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "set TCP_NODELAY");
    }
    let (reader, writer) = stream.into_split();
    let mut conn = Connection {
        reader: FrameReader::new(reader, config.frame_bytes_max),
        writer,
        peer,
        backend,
        in_flight: FuturesOrdered::new(),
        pending: None,
        ordered_in_flight: false,
    };
    match conn.run(config, stop).await {
        Ok(reason) => tracing::debug!(reason, "kafka connection closed"),
        Err(e) => tracing::warn!(reason = %e, "closing kafka connection"),
    }
}

/// A handled request: whether it was ordered, and its response frame (none for acks=0).
type Outcome = (bool, Result<Option<Bytes>, KafkaError>);

/// A request being handled (boxed: one allocation per request, next to the decoded request's).
type InFlight = Pin<Box<dyn Future<Output = Outcome> + Send>>;

struct Connection<B: Backend> {
    reader: FrameReader<tokio::net::tcp::OwnedReadHalf>,
    writer: OwnedWriteHalf,
    peer: SocketAddr,
    backend: Arc<B>,
    /// Requests being handled, yielded in request order.
    in_flight: FuturesOrdered<InFlight>,
    /// A request read but not yet started (it waits for an ordered request, or for the
    /// connection to drain before an ordered request).
    pending: Option<DecodedRequest>,
    /// An ordered request is in flight: nothing else starts until it completes.
    ordered_in_flight: bool,
}

impl<B: Backend> Connection<B> {
    /// Starts the pending request if the ordering rules allow.
    fn dispatch(&mut self) {
        let Some(req) = self.pending.take() else {
            return;
        };
        let ordered = handlers::is_ordered(&req.body);
        if self.ordered_in_flight || (ordered && !self.in_flight.is_empty()) {
            self.pending = Some(req);
            return;
        }
        self.ordered_in_flight = ordered;
        let (backend, peer) = (Arc::clone(&self.backend), self.peer);
        self.in_flight.push_back(Box::pin(async move {
            (ordered, handlers::handle(&*backend, peer, req).await)
        }));
    }

    async fn write(&mut self, outcome: Outcome) -> Result<(), KafkaError> {
        let (ordered, result) = outcome;
        if ordered {
            self.ordered_in_flight = false;
        }
        if let Some(frame) = result? {
            self.writer.write_all(&frame).await?;
        }
        Ok(())
    }

    fn drained(&self) -> bool {
        self.in_flight.is_empty() && self.pending.is_none()
    }

    async fn run(
        &mut self,
        config: &KafkaConfig,
        mut stop: watch::Receiver<bool>,
    ) -> Result<&'static str, KafkaError> {
        let mut stopping = false;
        let mut last_activity = Instant::now();
        loop {
            self.dispatch();
            if stopping && self.drained() {
                return Ok("shutdown");
            }
            let can_read =
                !stopping && self.pending.is_none() && self.in_flight.len() < config.in_flight_max;
            let idle = !stopping && self.in_flight.is_empty();
            tokio::select! {
                biased;
                _ = stop.changed(), if !stopping => stopping = true,
                Some(outcome) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    self.write(outcome).await?;
                    last_activity = Instant::now();
                }
                frame = self.reader.next_frame(), if can_read => {
                    let Some(frame) = frame? else { return Ok("closed by the client") };
                    self.pending = Some(decode_request(frame)?);
                    last_activity = Instant::now();
                }
                () = tokio::time::sleep_until(last_activity + config.idle_timeout), if idle => {
                    return Ok("idle timeout");
                }
            }
        }
    }
}
