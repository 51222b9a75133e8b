//! The accept loop: HTTP/1.1 connections served by hyper with a header-read timeout, at most
//! `MAX_CONNECTIONS` open at once (further clients wait in the listen backlog), each request
//! tagged with the peer's address. On shutdown it stops accepting, lets connections finish
//! their requests for at most `SHUTDOWN_TIMEOUT`, then closes whatever is still open, so a
//! stalled client can never keep the process from stopping.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tower::ServiceExt;
use tracing::{debug, info, warn};

use crate::config::HttpConfig;

/// Headers hyper parses at most; the router answers 431 (as a problem document) well below.
const HYPER_MAX_HEADERS: usize = 256;
/// Bytes of a request head hyper buffers at most; beyond it hyper itself answers 431.
const HYPER_MAX_BUF: usize = 256 * 1024;

/// Serves `router` on `listener` until `shutdown` resolves, then drains (see module docs).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: &HttpConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_headers(HYPER_MAX_HEADERS)
        .max_buf_size(HYPER_MAX_BUF);
    tokio::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: keep serving
                    // the connections there are; try again shortly.
                    warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = router
            .clone()
            .map_request(move |mut req: axum::http::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            });
        let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let conn = graceful.watch(conn);
        connections.spawn(async move {
            if let Err(e) = conn.await {
                debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    let open = connections.len();
    if open > 0 {
        info!(
            open,
            deadline_s = settings.shutdown_timeout.as_secs(),
            "draining connections"
        );
    }
    let drained = tokio::time::timeout(settings.shutdown_timeout, graceful.shutdown()).await;
    if drained.is_err() {
        warn!(
            open = connections.len(),
            "connections still open at the shutdown deadline; closing them"
        );
    }
    connections.shutdown().await;
    Ok(())
}
