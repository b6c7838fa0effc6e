//! Running a node: bind, serve the three ports, bootstrap, and shut down gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::FutureExt;
use skein_proto::v1 as pb;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tonic::server::NamedService;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::transport::Server;
use tracing::Instrument;

use crate::broker::Broker;
use crate::config::NodeConfig;
use crate::core::BrokerCore;
use crate::error::{NodeError, Result};
use crate::http::{self, HttpState};
use crate::internal::NodeControlApi;
use crate::kafka::KafkaBackend;
use crate::metrics;
use crate::service::ClientApi;

/// The node's bound listeners. Binding before `run` lets tests use port 0.
#[derive(Debug)]
pub struct Listeners {
    /// Client gRPC API.
    pub client: TcpListener,
    /// Peer (Raft) gRPC API.
    pub peer: TcpListener,
    /// HTTP endpoints.
    pub http: TcpListener,
    /// Kafka protocol.
    pub kafka: TcpListener,
}

impl Listeners {
    /// Binds the addresses of `config`.
    pub async fn bind(config: &NodeConfig) -> Result<Self> {
        let bind = |addr: SocketAddr, what: &'static str| async move {
            TcpListener::bind(addr).await.map_err(|e| {
                NodeError::Config(format!(
                    "cannot listen on {addr} for the {what}: {e} (is another skein-node running? choose another address with --{what}-addr)"
                ))
            })
        };
        Ok(Listeners {
            client: bind(config.client_addr, "client").await?,
            peer: bind(config.peer_addr, "peer").await?,
            http: bind(config.http_addr, "http").await?,
            kafka: bind(config.kafka_addr, "kafka").await?,
        })
    }

    /// Binds four free ports on 127.0.0.1 (tests).
    pub async fn bind_ephemeral() -> Result<Self> {
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        let l = |_: ()| async move {
            TcpListener::bind(any)
                .await
                .map_err(|e| NodeError::Internal(format!("bind 127.0.0.1:0: {e}")))
        };
        Ok(Listeners {
            client: l(()).await?,
            peer: l(()).await?,
            http: l(()).await?,
            kafka: l(()).await?,
        })
    }

    /// The bound addresses: (client, peer, http).
    pub fn addrs(&self) -> Result<(SocketAddr, SocketAddr, SocketAddr)> {
        let a = |l: &TcpListener| {
            l.local_addr()
                .map_err(|e| NodeError::Internal(format!("local address: {e}")))
        };
        Ok((a(&self.client)?, a(&self.peer)?, a(&self.http)?))
    }

    /// The bound address of the Kafka listener.
    pub fn kafka_addr(&self) -> Result<SocketAddr> {
        self.kafka
            .local_addr()
            .map_err(|e| NodeError::Internal(format!("local address: {e}")))
    }
}

/// A connection that holds a permit of the connection limit while it is open.
#[derive(Debug)]
struct LimitedConn {
    inner: TcpStream,
    _permit: Option<OwnedSemaphorePermit>,
    broker: Option<Arc<Broker>>,
    /// On the peer port (counted in the bounds' metrics, not as a client connection).
    peer: bool,
}

impl Drop for LimitedConn {
    fn drop(&mut self) {
        match &self.broker {
            Some(b) if self.peer => b.metrics.bounds.peer_connection_closed(),
            Some(b) => b.metrics.connection_closed(),
            None => {}
        }
    }
}

impl Connected for LimitedConn {
    type ConnectInfo = TcpConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for LimitedConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Accepted connections, at most `limit` open at once (the rest wait in the kernel's backlog).
fn incoming(
    listener: TcpListener,
    limit: Option<Arc<Semaphore>>,
    broker: Option<Arc<Broker>>,
) -> impl futures_util::Stream<Item = std::io::Result<LimitedConn>> {
    futures_util::stream::unfold(
        (listener, limit, broker),
        |(listener, limit, broker)| async move {
            let permit = match &limit {
                Some(s) => s.clone().acquire_owned().await.ok(),
                None => None,
            };
            let r = listener.accept().await.map(|(s, _)| {
                let _ = s.set_nodelay(true);
                if let Some(b) = &broker {
                    b.metrics.connection_opened();
                }
                LimitedConn {
                    inner: s,
                    _permit: permit,
                    broker: broker.clone(),
                    peer: false,
                }
            });
            Some((r, (listener, limit, broker)))
        },
    )
}

/// Accepted peer connections, at most `limit` open at once: one more is closed at accept (with
/// a metric and a log line), so that a flood of connections cannot hold the peer port's
/// memory, while the nodes' own connections (a few per peer, kept open) are never queued
/// behind it.
fn peer_incoming(
    listener: TcpListener,
    limit: usize,
    broker: Arc<Broker>,
) -> impl futures_util::Stream<Item = std::io::Result<LimitedConn>> {
    let permits = Arc::new(Semaphore::new(limit));
    futures_util::stream::unfold(
        (listener, permits, broker),
        move |(listener, permits, broker)| async move {
            loop {
                let (s, from) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => return Some((Err(e), (listener, permits, broker))),
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    broker.metrics.bounds.peer_connections_refused.inc();
                    tracing::warn!(%from, limit, "peer connection refused: limits.peer_connections_max connections are open");
                    drop(s);
                    continue;
                };
                let _ = s.set_nodelay(true);
                broker.metrics.bounds.peer_connection_opened();
                let conn = LimitedConn {
                    inner: s,
                    _permit: Some(permit),
                    broker: Some(broker.clone()),
                    peer: true,
                };
                return Some((Ok(conn), (listener, permits, broker)));
            }
        },
    )
}

/// A client service behind the node's decoding limit (`limits.request_bytes_max`). tonic refuses
/// a larger request before any handler runs, with a bare OUT_OF_RANGE; this answers with the
/// broker's REQUEST_TOO_LARGE instead (see [`NodeError::from_decode_limit`]), the sizes in the
/// status metadata. Every other response passes through untouched.
#[derive(Debug, Clone)]
struct RequestLimit<S>(S);

type GrpcResponse = tonic::codegen::http::Response<tonic::body::Body>;
type Answer<E> = std::result::Result<GrpcResponse, E>;

impl<S: NamedService> NamedService for RequestLimit<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tonic::codegen::Service<tonic::codegen::http::Request<B>> for RequestLimit<S>
where
    S: tonic::codegen::Service<tonic::codegen::http::Request<B>, Response = GrpcResponse>,
{
    type Response = GrpcResponse;
    type Error = S::Error;
    type Future = futures_util::future::Map<S::Future, fn(Answer<S::Error>) -> Answer<S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: tonic::codegen::http::Request<B>) -> Self::Future {
        self.0
            .call(request)
            .map(typed_refusal::<S::Error> as fn(_) -> _)
    }
}

/// Replaces tonic's refusal of an oversized request by REQUEST_TOO_LARGE.
fn typed_refusal<E>(answer: Answer<E>) -> Answer<E> {
    let response = answer?;
    // tonic's refusal is a trailers-only response, its status in the headers; a response without
    // OUT_OF_RANGE there is passed on without looking further.
    let headers = response.headers();
    if headers.get("grpc-status").map(|v| v.as_bytes()) != Some(b"11") {
        return Ok(response);
    }
    match tonic::Status::from_header_map(headers)
        .as_ref()
        .and_then(NodeError::from_decode_limit)
    {
        Some(e) => {
            tracing::debug!(error = %e, "client request refused");
            Ok(e.to_status().into_http())
        }
        None => Ok(response),
    }
}

struct HttpView(Arc<Broker>);

impl HttpState for HttpView {
    fn not_ready_reason(&self) -> Option<String> {
        self.0.not_ready_reason()
    }
    fn metrics_text(&self) -> String {
        let b = self.0.clone();
        // Gauges need the logs' positions, which are behind async locks.
        let gauges = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(b.partition_gauges())
        });
        let groups = self.0.group_gauges();
        let text = self.0.metrics.render(self.0.node_id(), &gauges, &groups);
        metrics::insert_before_eof(
            text,
            &self.0.metrics.bounds.gauges(&producer_gauges(&self.0)),
        )
    }
}

/// Each local replica's idempotent-producer table, for `/metrics`.
fn producer_gauges(broker: &Broker) -> Vec<metrics::ProducerGauge> {
    let mut out: Vec<_> = broker
        .local_replicas()
        .into_iter()
        .map(|r| {
            let p = r.group.producer_stats();
            metrics::ProducerGauge {
                topic: r.topic,
                partition: r.partition,
                ids: p.ids as u64,
                expired: p.expired,
                evicted: p.evicted,
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    out
}

/// Serves the Kafka protocol over the broker core until `shutdown` completes, then lets each
/// connection finish the requests it has read.
async fn serve_kafka(
    listener: TcpListener,
    broker: Arc<Broker>,
    config: skein_kafka::KafkaConfig,
    shutdown: impl Future<Output = ()>,
) {
    let span = tracing::info_span!("kafka", node = broker.node_id());
    let backend = Arc::new(KafkaBackend::new(BrokerCore::new(broker)));
    let served = skein_kafka::serve(listener, backend, config, shutdown)
        .instrument(span)
        .await;
    // The settings were validated with the node's configuration.
    if let Err(e) = served {
        tracing::error!(error = %e, "Kafka listener refused its settings");
    }
}

/// `advertised` with a port of 0 replaced by the port the listener was bound to (so that a node
/// started with `--kafka-addr 127.0.0.1:0` advertises its real port).
fn advertised_with_port(advertised: &str, bound: SocketAddr) -> String {
    match advertised.rsplit_once(':') {
        Some((host, "0")) => format!("{host}:{}", bound.port()),
        _ => advertised.to_owned(),
    }
}

/// Installs the `tracing` subscriber (`RUST_LOG` filters; default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested");
}

/// Runs a node on bound `listeners` until `shutdown` completes, then stops gracefully: stop
/// accepting requests, let in-flight ones finish, close every Raft group (flushing its log).
pub async fn run(
    listeners: Listeners,
    config: NodeConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let span = tracing::info_span!("node", node = config.node_id);
    let _enter = span.enter();
    let (client_addr, peer_addr, http_addr) = listeners.addrs()?;
    let kafka_addr = listeners.kafka_addr()?;
    let mut config = config;
    config.advertised_kafka_addr = advertised_with_port(&config.advertised_kafka_addr, kafka_addr);
    let limits = config.limits.clone();
    let kafka_config = config.kafka.clone();
    let broker = Broker::open(config).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    // Raft traffic wants large HTTP/2 windows (the default 1 MiB throttles replication).
    let peer_server = skein_raft::RaftService::server_builder(broker.registry.config())
        .add_service(skein_raft::RaftService::new(broker.registry.clone()).into_server())
        .add_service(pb::node_control_server::NodeControlServer::new(
            NodeControlApi::new(broker.clone()),
        ))
        .serve_with_incoming_shutdown(
            peer_incoming(listeners.peer, limits.peer_connections_max, broker.clone()),
            stopped(stop_rx.clone()),
        );
    let peer_task = tokio::spawn(peer_server);

    let api = ClientApi::new(broker.clone());
    let max = limits.request_bytes_max;
    let client_server = Server::builder()
        .concurrency_limit_per_connection(limits.inflight_requests_max)
        .add_service(RequestLimit(
            pb::metadata_service_server::MetadataServiceServer::new(api.clone())
                .max_decoding_message_size(max),
        ))
        .add_service(RequestLimit(
            pb::produce_service_server::ProduceServiceServer::new(api.clone())
                .max_decoding_message_size(max),
        ))
        .add_service(RequestLimit(
            pb::group_service_server::GroupServiceServer::new(
                crate::groups::service::GroupApi::new(broker.clone()),
            )
            .max_decoding_message_size(max),
        ))
        .add_service(RequestLimit(
            pb::fetch_service_server::FetchServiceServer::new(api)
                .max_decoding_message_size(max)
                .max_encoding_message_size(limits.fetch_bytes_max as usize + (1 << 20)),
        ))
        .serve_with_incoming_shutdown(
            incoming(
                listeners.client,
                Some(Arc::new(Semaphore::new(limits.connections_max))),
                Some(broker.clone()),
            ),
            stopped(stop_rx.clone()),
        );
    let client_task = tokio::spawn(client_server);
    let kafka_task = tokio::spawn(serve_kafka(
        listeners.kafka,
        broker.clone(),
        kafka_config,
        stopped(stop_rx.clone()),
    ));
    let http_task = tokio::spawn(http::serve(
        listeners.http,
        Arc::new(HttpView(broker.clone())),
        stopped(stop_rx.clone()),
    ));

    tokio::spawn(broker.clone().watch_metadata());
    tokio::spawn(broker.clone().reconcile_loop());
    tokio::spawn(broker.clone().group_timer());
    // Works on the replicas the reconcile loop opens.
    tokio::spawn(crate::retention::run(broker.clone()));
    let b = broker.clone();
    tokio::spawn(async move {
        if let Err(e) = b.bootstrap().await {
            tracing::error!(error = %e, "joining the cluster failed");
        }
    });
    tracing::info!(%client_addr, %peer_addr, %http_addr, %kafka_addr, advertised_kafka_addr = %broker.config.advertised_kafka_addr, data_dir = %broker.config.data_dir.display(), "skein-node started");

    shutdown.await;
    broker
        .stopping
        .store(true, std::sync::atomic::Ordering::Release);
    let _ = stop_tx.send(true);
    let (c, p, h, k) = tokio::join!(client_task, peer_task, http_task, kafka_task);
    if let Err(e) = k {
        tracing::warn!(error = %e, "Kafka listener task failed");
    }
    for (what, r) in [
        ("client API", c.map(|r| r.map_err(|e| e.to_string()))),
        ("peer API", p.map(|r| r.map_err(|e| e.to_string()))),
    ] {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(server = what, error = %e, "server stopped with an error"),
            Err(e) => tracing::warn!(server = what, error = %e, "server task failed"),
        }
    }
    if let Ok(Err(e)) = h {
        tracing::warn!(error = %e, "HTTP server stopped with an error");
    }
    broker.shutdown().await?;
    tracing::info!("skein-node stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tonics_decode_limit_refusal_is_rewritten() {
        let answer =
            |status: tonic::Status| -> Answer<std::convert::Infallible> { Ok(status.into_http()) };
        let refusal = tonic::Status::out_of_range(
            "Error, decoded message length too large: found 20 bytes, the limit is: 10 bytes",
        );
        let Ok(rewritten) = typed_refusal(answer(refusal));
        let status = tonic::Status::from_header_map(rewritten.headers()).expect("a status");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        let md = status.metadata();
        let get = |k| md.get(k).and_then(|v| v.to_str().ok());
        assert_eq!(get("skein-error-code"), Some("17"));
        assert_eq!(get("skein-request-bytes"), Some("20"));
        assert_eq!(get("skein-request-bytes-max"), Some("10"));
        // The broker's own OUT_OF_RANGE (an offset outside the log) passes through.
        let offset = NodeError::from(skein_storage::StorageError::OffsetOutOfRange {
            requested: 9,
            start: 0,
            end: 5,
        })
        .to_status();
        let Ok(kept) = typed_refusal(answer(offset.clone()));
        let status = tonic::Status::from_header_map(kept.headers()).expect("a status");
        assert_eq!(status.message(), offset.message());
        // A successful response (status in the trailers) passes through.
        let ok = tonic::codegen::http::Response::new(tonic::body::Body::default());
        let Ok(kept) = typed_refusal::<std::convert::Infallible>(Ok(ok));
        assert!(kept.headers().get("grpc-status").is_none());
    }

    #[test]
    fn an_advertised_port_of_zero_is_the_bound_port() {
        let bound: SocketAddr = ([127, 0, 0, 1], 41234).into();
        assert_eq!(
            advertised_with_port("127.0.0.1:0", bound),
            "127.0.0.1:41234"
        );
        assert_eq!(advertised_with_port("10.0.0.5:0", bound), "10.0.0.5:41234");
        assert_eq!(
            advertised_with_port("10.0.0.5:9092", bound),
            "10.0.0.5:9092"
        );
    }
}
