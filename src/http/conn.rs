//! Connections (SPEC §15, HTTP limits): accepting under a cap, the header-read and idle
//! timeouts, and the drain at shutdown. Served with hyper-util's connection builder (HTTP/1.1,
//! and HTTP/2 with prior knowledge, as `axum::serve` did).
//!
//! hyper's own `header_read_timeout` is not used: it also starts when a keep-alive connection
//! goes idle, so it would close idle connections after 10 s instead of 60 s. Instead every
//! connection carries a small [`Tracker`]: the socket wrapper notes when bytes arrive, the
//! service notes when a request starts and when its response has been written (the response
//! body is dropped), and a supervisor around the connection future reads the tracker after
//! every poll and arms one timer:
//!
//! - waiting for a request head (since accept, or since the first byte of a request arrived on
//!   an idle connection): closed once [`Timeouts::header_read`] has passed, however slowly the
//!   bytes trickle in;
//! - idle after a response: closed after [`Timeouts::idle`];
//! - a request in flight: no timer (the handlers themselves are bounded).
//!
//! `maxConnections` is a semaphore taken before `accept`, so connections beyond it wait in the
//! kernel's backlog rather than being accepted. So that idle or slow clients cannot hold every
//! slot (and `/healthz` stays reachable), the server keeps one slot free while at the cap:
//! each time it is reached, the connection that has waited longest without a request in flight
//! is closed, slow ones (a partial request head) before idle keep-alive ones. A connection
//! serving a request is never evicted. Running out of file descriptors (`EMFILE`) is handled
//! the same way.
//!
//! At shutdown the listener is closed (new connections are refused), connections without a
//! request in flight are closed at once, and the others finish their request and close; after
//! [`Timeouts::shutdown`] whatever is left is dropped.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use http_body_util::BodyExt as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt as _;

/// Test-only: overrides [`Timeouts::header_read`] in milliseconds when `serve` starts. Not a
/// setting: the SPEC's 10 s is the product; tests use it to avoid waiting that long.
#[doc(hidden)]
pub const HEADER_TIMEOUT_ENV: &str = "MCP_AUTHD_HEADER_TIMEOUT_MS";

/// Test-only: overrides [`Timeouts::idle`] in milliseconds when `serve` starts.
#[doc(hidden)]
pub const IDLE_TIMEOUT_ENV: &str = "MCP_AUTHD_IDLE_TIMEOUT_MS";

/// How long after reaching the cap with nothing to evict (every connection is serving a
/// request) the server looks again.
const EVICTION_RETRY: Duration = Duration::from_millis(50);

/// How often at most an `accept` failure is logged (they repeat under a flood).
const ACCEPT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The connection timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// A request head must be complete this long after its connection was accepted or went
    /// from idle to receiving (SPEC: 10 s).
    pub header_read: Duration,
    /// A keep-alive connection with no request is closed after this long (SPEC: 60 s).
    pub idle: Duration,
    /// At shutdown, requests in flight get this long to finish (`serve --shutdown-timeout`).
    pub shutdown: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            shutdown: Duration::from_secs(30),
        }
    }
}

impl Timeouts {
    /// These timeouts with [`HEADER_TIMEOUT_ENV`] and [`IDLE_TIMEOUT_ENV`] applied (read once,
    /// by `serve` at start).
    #[doc(hidden)]
    pub fn with_test_overrides(mut self) -> Self {
        let millis = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|n| *n > 0)
                .map(Duration::from_millis)
        };
        if let Some(d) = millis(HEADER_TIMEOUT_ENV) {
            self.header_read = d;
        }
        if let Some(d) = millis(IDLE_TIMEOUT_ENV) {
            self.idle = d;
        }
        self
    }
}

/// Where each request finds the router that answers it. A reload replaces the router; asking
/// per request rather than per connection lets a keep-alive connection opened before the
/// reload see the new configuration at its next request, while a request in flight finishes
/// on the router it started with.
pub trait Routes: Send + Sync + 'static {
    /// The router for a request that starts now.
    fn current(&self) -> Router;
}

impl Routes for Router {
    fn current(&self) -> Router {
        self.clone()
    }
}

/// Serves the routers of `routes` on `listener` with at most `max_connections` open
/// connections until `shutdown` completes, then drains (see the module documentation).
pub async fn serve(
    listener: TcpListener,
    routes: Arc<dyn Routes>,
    max_connections: usize,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut shutdown = pin!(shutdown);
    let permits = Arc::new(Semaphore::new(max_connections.max(1)));
    let registry = Arc::new(Registry::default());
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Ours, see the module documentation.
    builder.http1().header_read_timeout(None);
    let builder = Arc::new(builder);
    let mut tasks = JoinSet::new();
    let mut last_logged: Option<Instant> = None;
    loop {
        while tasks.try_join_next().is_some() {}
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                registry.evict_one();
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    () = tokio::time::sleep(EVICTION_RETRY) => continue,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    drop(permit);
                    accept_failed(&e, &registry, &mut last_logged).await;
                    continue;
                }
            },
        };
        let tracker = Tracker::new(Instant::now());
        let registered = registry.add(tracker.clone());
        let (routes, builder) = (routes.clone(), builder.clone());
        tasks.spawn(async move {
            let _slot = (permit, registered);
            serve_connection(&builder, stream, peer, routes, tracker, timeouts).await;
        });
    }
    // Stop accepting: connections still in the backlog are refused.
    drop(listener);
    registry.close_all();
    if !tasks.is_empty() {
        tracing::info!(
            "draining {} open connection(s) for at most {}s",
            tasks.len(),
            timeouts.shutdown.as_secs_f32()
        );
    }
    let drained = tokio::time::timeout(timeouts.shutdown, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "{} connection(s) still busy after the {}s shutdown timeout; closing them",
            tasks.len(),
            timeouts.shutdown.as_secs_f32()
        );
        tasks.shutdown().await;
    }
    Ok(())
}

/// A failed `accept`: the peer gave up (nothing to do), or the process is out of file
/// descriptors or memory (make room as at the cap, then retry), or something else (log, back
/// off briefly). Logged at most every [`ACCEPT_ERROR_LOG_INTERVAL`].
async fn accept_failed(e: &std::io::Error, registry: &Registry, last_logged: &mut Option<Instant>) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    let now = Instant::now();
    if last_logged.is_none_or(|at| now.duration_since(at) >= ACCEPT_ERROR_LOG_INTERVAL) {
        *last_logged = Some(now);
        tracing::warn!(
            "accepting a connection failed ({e}); closing idle connections and retrying"
        );
    }
    #[cfg(unix)]
    let out_of_resources = matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    );
    #[cfg(not(unix))]
    let out_of_resources = false;
    let pause = if out_of_resources && registry.evict_one() {
        // Just long enough for the evicted connection's task to close its socket.
        Duration::from_millis(1)
    } else {
        Duration::from_millis(100)
    };
    tokio::time::sleep(pause).await;
}

/// Serves one connection under its [`Tracker`].
async fn serve_connection(
    builder: &auto::Builder<TokioExecutor>,
    stream: TcpStream,
    peer: SocketAddr,
    routes: Arc<dyn Routes>,
    tracker: Tracker,
    timeouts: Timeouts,
) {
    let io = TokioIo::new(Watched {
        inner: stream,
        tracker: tracker.clone(),
    });
    let requests = tracker.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
        let in_flight = requests.request_started();
        request.extensions_mut().insert(ConnectInfo(peer));
        let router = routes.current();
        async move {
            let response = match router.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            // The request counts as in flight until hyper has written the whole response and
            // drops its body.
            Ok::<_, Infallible>(response.map(move |body| {
                body.map_frame(move |frame| {
                    let _in_flight = &in_flight;
                    frame
                })
            }))
        }
    });
    let connection = builder.serve_connection(io, service);
    supervise(connection, |c| c.graceful_shutdown(), &tracker, timeouts).await;
}

/// Drives `connection` until it ends or the tracker says it must be closed (dropping it closes
/// the socket); `graceful` asks it to finish what it is doing and close.
async fn supervise<C: Future>(
    connection: C,
    mut graceful: impl FnMut(Pin<&mut C>),
    tracker: &Tracker,
    timeouts: Timeouts,
) {
    let mut connection = pin!(connection);
    let mut timer = pin!(tokio::time::sleep(timeouts.idle));
    let mut is_graceful = false;
    // A fired timer's deadline: time has reached it even if the clock read says a hair less.
    let mut reached: Option<Instant> = None;
    std::future::poll_fn(|cx| {
        loop {
            tracker.enter_poll(cx.waker());
            let done = connection.as_mut().poll(cx).is_ready();
            let now = reached
                .take()
                .map_or_else(Instant::now, |at| at.max(Instant::now()));
            let next = tracker.leave_poll(now, timeouts);
            if done || next.action == Action::Close {
                return Poll::Ready(());
            }
            if next.action == Action::Graceful && !is_graceful {
                is_graceful = true;
                graceful(connection.as_mut());
                continue;
            }
            let Some(deadline) = next.deadline else {
                return Poll::Pending;
            };
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            reached = Some(deadline);
        }
    })
    .await;
}

/// What a connection is waiting for while no request is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    /// A request head, since this instant (accepted, or bytes arrived while idle).
    ForHead(Instant),
    /// Nothing: idle after a response since this instant.
    Idle(Instant),
}

#[derive(Debug)]
struct Activity {
    /// Requests whose response has not been written completely.
    in_flight: usize,
    waiting: Waiting,
    /// Asked to close (evicted at the cap, or shutting down).
    close_asked: bool,
    /// The supervisor's waker, and whether it is polling right now (then it reads the state
    /// when the poll returns and needs no wake-up).
    waker: Option<Waker>,
    polling: bool,
}

/// What the supervisor does after a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Keep going.
    Continue,
    /// Finish the request in flight, or flush and close an idle connection.
    Graceful,
    /// Drop the connection now.
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Next {
    action: Action,
    /// When to look again.
    deadline: Option<Instant>,
}

/// The activity of one connection, shared by its socket, its service and its supervisor.
#[derive(Debug, Clone)]
struct Tracker(Arc<Mutex<Activity>>);

impl Tracker {
    fn new(accepted: Instant) -> Self {
        Self(Arc::new(Mutex::new(Activity {
            in_flight: 0,
            waiting: Waiting::ForHead(accepted),
            close_asked: false,
            waker: None,
            polling: false,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Activity> {
        // Every update leaves the state consistent, so a poisoned lock is still usable.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes arrived. On an idle connection they are the start of a request head (while a
    /// request is in flight they are its body, or a pipelined request, which the header timer
    /// then does not cover: such a connection falls under the idle timeout instead).
    fn bytes_read(&self) {
        let mut a = self.lock();
        if a.in_flight == 0
            && let Waiting::Idle(_) = a.waiting
        {
            a.waiting = Waiting::ForHead(Instant::now());
        }
    }

    /// A request head was read; the guard marks the end of its response.
    fn request_started(&self) -> InFlight {
        self.lock().in_flight += 1;
        InFlight(self.clone())
    }

    fn request_finished(&self) {
        let mut a = self.lock();
        a.in_flight = a.in_flight.saturating_sub(1);
        if a.in_flight == 0 {
            a.waiting = Waiting::Idle(Instant::now());
            // HTTP/2 responses are written by tasks of their own: tell the supervisor.
            if !a.polling
                && let Some(waker) = &a.waker
            {
                waker.wake_by_ref();
            }
        }
    }

    /// Asks the connection to close: at once if no request is in flight, else after it.
    fn ask_to_close(&self) {
        let mut a = self.lock();
        a.close_asked = true;
        if !a.polling
            && let Some(waker) = &a.waker
        {
            waker.wake_by_ref();
        }
    }

    fn enter_poll(&self, waker: &Waker) {
        let mut a = self.lock();
        a.polling = true;
        if !a.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            a.waker = Some(waker.clone());
        }
    }

    fn leave_poll(&self, now: Instant, timeouts: Timeouts) -> Next {
        let mut a = self.lock();
        a.polling = false;
        a.next(now, timeouts)
    }

    /// How eager eviction is to close this connection: `None` while a request is in flight or
    /// once asked; otherwise slow (partial head) before idle, the longest-waiting first.
    fn eviction_rank(&self) -> Option<(u8, Instant)> {
        let a = self.lock();
        if a.in_flight > 0 || a.close_asked {
            return None;
        }
        Some(match a.waiting {
            Waiting::ForHead(since) => (0, since),
            Waiting::Idle(since) => (1, since),
        })
    }
}

impl Activity {
    fn next(&self, now: Instant, timeouts: Timeouts) -> Next {
        let at = |action, deadline| Next {
            action,
            deadline: Some(deadline),
        };
        if self.in_flight > 0 {
            let action = if self.close_asked {
                Action::Graceful
            } else {
                Action::Continue
            };
            return Next {
                action,
                deadline: None,
            };
        }
        match self.waiting {
            // Nothing has been answered on it since: closing loses nothing.
            Waiting::ForHead(since) => {
                let deadline = since + timeouts.header_read;
                if self.close_asked || now >= deadline {
                    at(Action::Close, deadline)
                } else {
                    at(Action::Continue, deadline)
                }
            }
            // The last response may still be in the socket's send path: a close that was asked
            // for goes through hyper, which flushes first; the idle timeout is long past that.
            Waiting::Idle(since) => {
                let deadline = since + timeouts.idle;
                if now >= deadline {
                    at(Action::Close, deadline)
                } else if self.close_asked {
                    at(Action::Graceful, deadline)
                } else {
                    at(Action::Continue, deadline)
                }
            }
        }
    }
}

/// Held while a request is in flight (moved into its response body).
#[derive(Debug)]
struct InFlight(Tracker);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// The open connections, for eviction at the cap and for the drain.
#[derive(Debug, Default)]
struct Registry {
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Tracker>>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Tracker>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add(self: &Arc<Self>, tracker: Tracker) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, tracker);
        Registered {
            registry: self.clone(),
            id,
        }
    }

    /// Asks the connection that has waited longest without a request in flight to close
    /// (slow before idle); whether there was one.
    fn evict_one(&self) -> bool {
        let open = self.lock();
        let victim = open
            .values()
            .filter_map(|t| t.eviction_rank().map(|rank| (rank, t)))
            .min_by_key(|(rank, _)| *rank);
        match victim {
            Some((_, tracker)) => {
                tracker.ask_to_close();
                true
            }
            None => false,
        }
    }

    fn close_all(&self) {
        for tracker in self.lock().values() {
            tracker.ask_to_close();
        }
    }
}

/// Removes a connection from the [`Registry`] when its task ends.
#[derive(Debug)]
struct Registered {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

/// The TCP stream, noting in the tracker when bytes arrive.
struct Watched {
    inner: TcpStream,
    tracker: Tracker,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.tracker.bytes_read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
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

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        header_read: Duration::from_secs(10),
        idle: Duration::from_secs(60),
        shutdown: Duration::from_secs(30),
    };

    fn activity(waiting: Waiting, in_flight: usize, close_asked: bool) -> Activity {
        Activity {
            in_flight,
            waiting,
            close_asked,
            waker: None,
            polling: false,
        }
    }

    #[test]
    fn a_request_head_must_arrive_within_the_header_timeout() {
        let t0 = Instant::now();
        let slow = activity(Waiting::ForHead(t0), 0, false);
        let before = slow.next(t0 + Duration::from_secs(9), T);
        assert_eq!(before.action, Action::Continue);
        assert_eq!(before.deadline, Some(t0 + Duration::from_secs(10)));
        assert_eq!(
            slow.next(t0 + Duration::from_secs(10), T).action,
            Action::Close
        );
    }

    #[test]
    fn an_idle_connection_lasts_the_idle_timeout_not_the_header_timeout() {
        let t0 = Instant::now();
        let idle = activity(Waiting::Idle(t0), 0, false);
        assert_eq!(
            idle.next(t0 + Duration::from_secs(30), T).action,
            Action::Continue
        );
        assert_eq!(
            idle.next(t0 + Duration::from_secs(60), T).action,
            Action::Close
        );
    }

    #[test]
    fn a_request_in_flight_has_no_timer_and_finishes_before_a_close() {
        let t0 = Instant::now();
        let busy = activity(Waiting::ForHead(t0), 1, false);
        let next = busy.next(t0 + Duration::from_secs(3600), T);
        assert_eq!((next.action, next.deadline), (Action::Continue, None));
        let asked = activity(Waiting::ForHead(t0), 1, true);
        assert_eq!(asked.next(t0, T).action, Action::Graceful);
        // Asked to close without a request in flight: a partial head is dropped, an idle
        // connection goes through hyper's graceful close (which flushes).
        assert_eq!(
            activity(Waiting::ForHead(t0), 0, true).next(t0, T).action,
            Action::Close
        );
        assert_eq!(
            activity(Waiting::Idle(t0), 0, true).next(t0, T).action,
            Action::Graceful
        );
    }

    #[test]
    fn trickled_bytes_do_not_restart_the_header_timer() {
        let t0 = Instant::now();
        let tracker = Tracker::new(t0);
        tracker.bytes_read();
        tracker.bytes_read();
        assert_eq!(tracker.lock().waiting, Waiting::ForHead(t0));
        // After a response the first byte starts a new head.
        drop(tracker.request_started());
        assert!(matches!(tracker.lock().waiting, Waiting::Idle(_)));
        tracker.bytes_read();
        assert!(matches!(tracker.lock().waiting, Waiting::ForHead(t) if t >= t0));
    }

    #[test]
    fn eviction_takes_the_longest_waiting_slow_connection_first_and_never_a_busy_one() {
        let registry = Arc::new(Registry::default());
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(1);
        let idle_old = Tracker::new(t0);
        idle_old.lock().waiting = Waiting::Idle(t0);
        let slow_new = Tracker::new(later);
        let slow_old = Tracker::new(t0);
        let busy = Tracker::new(t0);
        let _request = busy.request_started();
        let _kept: Vec<_> = [&idle_old, &slow_new, &slow_old, &busy]
            .into_iter()
            .map(|t| registry.add(t.clone()))
            .collect();
        let asked = |t: &Tracker| t.lock().close_asked;
        assert!(registry.evict_one());
        assert!(asked(&slow_old) && !asked(&slow_new) && !asked(&idle_old));
        assert!(registry.evict_one());
        assert!(asked(&slow_new) && !asked(&idle_old));
        assert!(registry.evict_one());
        assert!(asked(&idle_old));
        assert!(!registry.evict_one(), "a busy connection is never evicted");
        assert!(!asked(&busy));
    }
}
