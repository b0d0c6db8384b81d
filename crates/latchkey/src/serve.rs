//! The HTTP listener: accepts connections and serves the router with limits
//! that `axum::serve` does not set — a cap on open connections overall and
//! per client address, a deadline from accept to the first request and for
//! every later request head, an idle timeout between requests (HTTP/1
//! keep-alive and HTTP/2 alike), HTTP/2 keep-alive pings for dead peers, a cap
//! on header size (431 beyond it) — and a graceful shutdown that drains
//! in-flight requests.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

use crate::http::limits::client_key;

/// Largest request head (request line and headers) accepted.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// How long shutdown waits for in-flight requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP/2 pings an idle peer this often, and drops it when a ping goes
/// unanswered this long: a peer that vanished does not hold a connection.
const H2_PING_INTERVAL: Duration = Duration::from_secs(20);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(10);

/// The connection limits, from the settings.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Time from accept to a complete first request head, and for every
    /// later request head.
    pub header_read_timeout: Duration,
    /// Time a connection may sit with no request in flight.
    pub idle_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
    /// Open connections per client address (IPv6: per /64) at most.
    pub max_connections_per_ip: usize,
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT)
        .max_header_list_size(MAX_HEADER_BYTES as u32);
    let slots = Slots::new(limits);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Over a cap, the connection is closed at once: cheaper than any answer.
        let Some(slot) = slots.take(peer.ip()) else {
            metrics::counter!("latchkey_connections_refused_total").increment(1);
            continue;
        };
        let activity = Arc::new(Activity::new());
        let reporter = activity.clone();
        let service = router
            .clone()
            .map_request(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                req.map(Body::new)
            })
            .map_future(move |response| {
                let busy = reporter.begin();
                async move {
                    let response = response.await;
                    drop(busy);
                    response
                }
            });
        let conn = builder.serve_connection_with_upgrades(
            TokioIo::new(stream),
            TowerToHyperService::new(service),
        );
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            tokio::select! {
                ended = conn => if let Err(e) = ended {
                    tracing::debug!(error = %e, "connection ended with an error");
                },
                () = activity.expired(limits) => {
                    tracing::debug!(%peer, "closed a connection that sent no request in time");
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown: some requests were still running after the drain timeout");
    }
    Ok(())
}

/// When a connection last did something, and what it is doing now.
struct Activity {
    started: Instant,
    /// Milliseconds after `started` of the last request's start or end.
    last: AtomicU64,
    requests: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            last: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        self.last.store(now, Ordering::Release);
    }

    /// Marks a request in flight until the guard drops.
    fn begin(self: &Arc<Self>) -> Busy {
        self.requests.fetch_add(1, Ordering::AcqRel);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        Busy(self.clone())
    }

    /// Completes once the connection has had no request in flight for too
    /// long: the header deadline before its first request, the idle timeout
    /// after.
    async fn expired(&self, limits: ConnectionLimits) {
        loop {
            let allowed = if self.requests.load(Ordering::Acquire) == 0 {
                limits.header_read_timeout
            } else {
                limits.idle_timeout
            };
            let last = Duration::from_millis(self.last.load(Ordering::Acquire));
            let idle_for = self.started.elapsed().saturating_sub(last);
            if self.in_flight.load(Ordering::Acquire) == 0 && idle_for >= allowed {
                return;
            }
            // Look again when the deadline would pass, and at least every
            // idle timeout: requests never wake the watch (that would cost
            // every request a timer), so a request that came and went since
            // the last look is seen at the next one.
            let wait = if self.in_flight.load(Ordering::Acquire) > 0 {
                allowed
            } else {
                allowed.saturating_sub(idle_for)
            };
            let wait = wait.min(limits.idle_timeout).max(Duration::from_millis(10));
            tokio::time::sleep(wait).await;
        }
    }
}

struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.touch();
    }
}

/// Places for open connections, overall and per client.
#[derive(Clone)]
struct Slots {
    overall: Arc<Semaphore>,
    per_client: Arc<Mutex<HashMap<IpAddr, usize>>>,
    per_client_max: usize,
}

impl Slots {
    fn new(limits: ConnectionLimits) -> Self {
        Self {
            overall: Arc::new(Semaphore::new(limits.max_connections)),
            per_client: Arc::new(Mutex::new(HashMap::new())),
            per_client_max: limits.max_connections_per_ip,
        }
    }

    /// A place for a connection from `ip`, or None when a cap is reached.
    fn take(&self, ip: IpAddr) -> Option<Slot> {
        let permit = self.overall.clone().try_acquire_owned().ok()?;
        let client = client_key(ip);
        let mut counts = self.lock();
        let count = counts.entry(client).or_insert(0);
        if *count >= self.per_client_max {
            if *count == 0 {
                counts.remove(&client);
            }
            return None;
        }
        *count += 1;
        Some(Slot {
            slots: self.clone(),
            client,
            _permit: permit,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// An open connection's place; given back when it closes.
struct Slot {
    slots: Slots,
    client: IpAddr,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.slots.lock();
        if let Some(count) = counts.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.client);
            }
        }
    }
}
