//! Accepting and serving HTTP/1 connections, the same way on the ingress and the control API.

use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};

/// How long a client has to send a request's headers, on a new connection or between requests
/// of a kept-alive one; then the connection is closed, so a client that opens connections and
/// never finishes them cannot hold sockets and tasks.
pub(crate) const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The most headers a request may carry; past it the request is refused with 431.
pub const MAX_HEADERS: usize = 100;
/// The most bytes a request's headers may take together (names and values).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// The longest request target (path and query) accepted; past it the request is refused with
/// 414.
pub const MAX_URL_BYTES: usize = 8 * 1024;

/// Why a request's head is beyond the limits, as the status and message the client gets.
pub(crate) fn head_beyond_limits<B>(req: &http::Request<B>) -> Option<(http::StatusCode, String)> {
    let url = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if url > MAX_URL_BYTES {
        return Some((
            http::StatusCode::URI_TOO_LONG,
            format!("request URL of {url} bytes is longer than the limit of {MAX_URL_BYTES}"),
        ));
    }
    let count = req.headers().len();
    if count > MAX_HEADERS {
        return Some((
            http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("{count} request headers are more than the limit of {MAX_HEADERS}"),
        ));
    }
    let bytes: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if bytes > MAX_HEADER_BYTES {
        return Some((
            http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "request headers of {bytes} bytes are more than the limit of {MAX_HEADER_BYTES}"
            ),
        ));
    }
    None
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The next connection, with Nagle off. Running out of file descriptors is transient: this backs
/// off and tries again instead of failing or spinning.
pub(crate) async fn accept(listener: &TcpListener) -> TcpStream {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                return stream;
            }
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// Serves one connection until the client closes it, keeping it alive between requests.
pub(crate) async fn serve<S>(stream: TcpStream, service: S)
where
    S: HttpService<Incoming>,
    S::Error: Into<BoxError>,
    S::ResBody: 'static,
    <S::ResBody as Body>::Error: Into<BoxError>,
{
    if let Err(e) = http1::Builder::new()
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        // Room past the limits, so a request just beyond them hears why from weft instead of
        // hyper's bare 431.
        .max_headers(MAX_HEADERS * 2)
        .max_buf_size(MAX_HEADER_BYTES * 4)
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!("connection ended: {e}");
    }
}
