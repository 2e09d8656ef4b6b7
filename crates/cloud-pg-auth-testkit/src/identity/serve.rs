//! The HTTP plumbing shared with the control endpoint: JSON answers, bounded bodies, and
//! listeners that really close while the emulator is "down" and come back on the same port.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

pub(crate) type Body = Full<Bytes>;
pub(crate) type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync,
>;

pub(crate) fn json_response(status: u16, v: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

/// Reads a request body (at most 1 MiB).
pub(crate) async fn read_body(req: Request<Incoming>) -> Result<Bytes, String> {
    Limited::new(req.into_body(), 1 << 20)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| e.to_string())
}

pub(crate) fn query_pairs(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Binds `addr` with SO_REUSEADDR (so a listener can come back on the same port).
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn serve_conn<S>(io: S, handler: Handler)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let h = handler.clone();
        async move { Ok::<_, Infallible>(h(req).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .await;
}

/// Serves HTTP(S) on `listener`. While `down` is true the listener is closed and open
/// connections are dropped; when it turns false the same address is bound again. `up`
/// reports the actual state. Returns when `shutdown` turns true or is dropped.
pub(crate) async fn supervise(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: Handler,
    mut down: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
    up: watch::Sender<bool>,
) {
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let mut listener = Some(listener);
    loop {
        let l = match listener.take() {
            Some(l) => l,
            None => loop {
                match bind(addr) {
                    Ok(l) => break l,
                    Err(e) => {
                        tracing::warn!("rebinding {addr}: {e}; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                            _ = shutdown.changed() => return,
                        }
                    }
                }
            },
        };
        if *down.borrow_and_update() {
            drop(l);
        } else {
            up.send_replace(true);
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    r = shutdown.changed() => {
                        if r.is_err() || *shutdown.borrow() {
                            return;
                        }
                    }
                    r = down.changed() => {
                        if r.is_err() || *down.borrow_and_update() {
                            break;
                        }
                    }
                    acc = l.accept() => {
                        if acc.is_err() {
                            // E.g. out of file descriptors: do not spin.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        if let Ok((stream, _)) = acc {
                            let h = handler.clone();
                            let tls = tls.clone();
                            conns.spawn(async move {
                                let _ = stream.set_nodelay(true);
                                match tls {
                                    Some(acceptor) => {
                                        if let Ok(s) = acceptor.accept(stream).await {
                                            serve_conn(s, h).await;
                                        }
                                    }
                                    None => serve_conn(stream, h).await,
                                }
                            });
                        }
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
            drop(l);
            conns.shutdown().await;
        }
        up.send_replace(false);
        // Down: wait to come back up.
        loop {
            tokio::select! {
                r = shutdown.changed() => {
                    if r.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
                r = down.changed() => {
                    if r.is_err() {
                        return;
                    }
                    if !*down.borrow_and_update() {
                        break;
                    }
                }
            }
        }
    }
}
