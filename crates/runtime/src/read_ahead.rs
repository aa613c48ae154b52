//! Reading the start of a response's body before its head goes out, so that a body which ends
//! at once is sent whole, with its length, in one write.
//!
//! A WASI 0.3 guest answers with a head and a stream it fills from a task of its own, then
//! closes. Sent as it comes, the head and the first chunk go out in one write and, once the
//! instance's event loop has seen the stream close, the chunked terminator in a second: two
//! loopback sends and two wakeups of the client per request (2.2–2.4 `writev` per request
//! measured, against 1.0 for a WASI 0.2 answer). Read ahead, a short body ends before the head
//! is sent and goes out with a `Content-Length` in a single write. A body still streaming after
//! [`READ_AHEAD_WAIT`], longer than [`READ_AHEAD_BYTES`], or with trailers goes on streaming,
//! the frames already read first: its head is at most that wait late. A body that fails while
//! it is read ahead fails the whole answer, since nothing of it has gone out: its caller can
//! still answer with an error status instead of a head that promises a body it cannot send.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body, Frame, SizeHint};

use crate::{HttpError, WorkloadBody};

/// The most of a body read before its head is sent.
const READ_AHEAD_BYTES: usize = 64 * 1024;

/// How long the guest is given to finish its body before the head goes without it: long enough
/// for a busy instance's event loop to come round to the guest closing its stream, short
/// enough that the head of a body that goes on streaming is not noticeably late.
const READ_AHEAD_WAIT: Duration = Duration::from_millis(5);

/// `response`, with its body read ahead: whole with its length if it ended meanwhile, else the
/// frames read so far followed by the rest as it comes; the body's error if it failed first.
pub(crate) async fn read_ahead(
    response: http::Response<WorkloadBody>,
) -> Result<http::Response<WorkloadBody>, HttpError> {
    let (parts, mut body) = response.into_parts();
    if body.is_end_stream() {
        return Ok(http::Response::from_parts(parts, body));
    }
    let mut read: VecDeque<Frame<Bytes>> = VecDeque::new();
    let mut bytes = 0;
    // Only a body that is not done at once starts the timer.
    let waited = tokio::time::sleep(READ_AHEAD_WAIT);
    let mut waited = std::pin::pin!(waited);
    let whole = loop {
        let next = tokio::select! {
            biased;
            next = body.frame() => next,
            () = &mut waited => break false,
        };
        match next {
            None => break true,
            Some(Ok(frame)) => {
                let data = frame.data_ref().map(Bytes::len);
                read.push_back(frame);
                match data {
                    Some(len) => bytes += len,
                    // Trailers: the body streams, so they go as trailers.
                    None => break false,
                }
                if bytes > READ_AHEAD_BYTES {
                    break false;
                }
            }
            Some(Err(e)) => return Err(e),
        }
    };
    let body = if whole {
        let mut chunks: Vec<Bytes> = read
            .into_iter()
            .filter_map(|frame| frame.into_data().ok())
            .collect();
        // One chunk, the usual case, goes out without a copy.
        let all = match chunks.len() {
            1 => chunks.pop().unwrap_or_default(),
            _ => Bytes::from(chunks.concat()),
        };
        Full::new(all)
            .map_err(|never| match never {})
            .boxed_unsync()
    } else {
        ReadAhead { read, rest: body }.boxed_unsync()
    };
    Ok(http::Response::from_parts(parts, body))
}

/// Frames already read, then the rest of the body they came from.
struct ReadAhead {
    read: VecDeque<Frame<Bytes>>,
    rest: WorkloadBody,
}

impl Body for ReadAhead {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        if let Some(frame) = self.read.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_empty() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let read: u64 = self
            .read
            .iter()
            .filter_map(|f| f.data_ref().map(|d| d.len() as u64))
            .sum();
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + read);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + read);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::channel::mpsc;
    use futures::SinkExt as _;
    use http_body_util::StreamBody;

    type Sender = mpsc::Sender<Result<Frame<Bytes>, HttpError>>;

    /// A response whose body is whatever is sent on the channel, until the sender is dropped.
    fn streamed() -> (Sender, http::Response<WorkloadBody>) {
        let (tx, rx) = mpsc::channel(16);
        let body = StreamBody::new(rx).boxed_unsync();
        (tx, http::Response::new(body))
    }

    fn data(text: &'static str) -> Result<Frame<Bytes>, HttpError> {
        Ok(Frame::data(Bytes::from_static(text.as_bytes())))
    }

    #[tokio::test]
    async fn a_body_that_ends_at_once_goes_whole_with_its_length() {
        let (mut tx, response) = streamed();
        tokio::spawn(async move {
            tx.send(data("hello, ")).await.unwrap();
            tokio::task::yield_now().await;
            tx.send(data("world")).await.unwrap();
        });
        let response = read_ahead(response).await.unwrap();
        assert_eq!(response.body().size_hint().exact(), Some(12));
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "hello, world");
    }

    #[tokio::test]
    async fn a_body_still_streaming_sends_its_head_after_the_wait_and_loses_nothing() {
        let (mut tx, response) = streamed();
        tx.send(data("first ")).await.unwrap();
        let started = std::time::Instant::now();
        let response = read_ahead(response).await.unwrap();
        let waited = started.elapsed();
        assert!(waited >= READ_AHEAD_WAIT, "answered after {waited:?}");
        assert_eq!(response.body().size_hint().exact(), None);
        tokio::spawn(async move {
            tx.send(data("second")).await.unwrap();
        });
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "first second");
    }

    #[tokio::test]
    async fn trailers_and_long_bodies_stream_unchanged() {
        let (mut tx, response) = streamed();
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-sum", http::HeaderValue::from_static("42"));
        let sent = trailers.clone();
        tokio::spawn(async move {
            tx.send(data("body")).await.unwrap();
            tx.send(Ok(Frame::trailers(sent))).await.unwrap();
        });
        let collected = read_ahead(response)
            .await
            .unwrap()
            .into_body()
            .collect()
            .await
            .unwrap();
        assert_eq!(collected.trailers(), Some(&trailers));
        assert_eq!(collected.to_bytes(), "body");

        let (mut tx, response) = streamed();
        let chunk = Bytes::from(vec![7u8; 40 * 1024]);
        let chunks = chunk.clone();
        tokio::spawn(async move {
            for _ in 0..3 {
                tx.send(Ok(Frame::data(chunks.clone()))).await.unwrap();
            }
        });
        let response = read_ahead(response).await.unwrap();
        assert_eq!(response.body().size_hint().exact(), None);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 3 * chunk.len());
        assert!(body.iter().all(|b| *b == 7));
    }

    #[tokio::test]
    async fn a_body_failing_before_its_head_goes_fails_the_answer() {
        let (mut tx, response) = streamed();
        tx.send(data("a piece")).await.unwrap();
        tx.send(Err(HttpError::InternalError(Some("gone".into()))))
            .await
            .unwrap();
        let failed = read_ahead(response).await;
        assert!(
            matches!(&failed, Err(HttpError::InternalError(Some(why))) if why == "gone"),
            "{:?}",
            failed.map(|r| r.status())
        );
    }
}
