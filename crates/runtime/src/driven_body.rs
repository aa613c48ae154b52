//! A response body that drives the guest writing it, so a streamed answer goes out from the
//! connection's own task instead of a task of its own woken on another thread per chunk; and
//! that ends in an error instead of its end when the guest failed, so an answer cut short by a
//! trap is never taken for a whole one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tracing::Instrument as _;

use crate::workload::Failure;
use crate::{HttpError, WorkloadBody};

/// The body of a guest's response together with the guest call still producing it. Each poll
/// for a frame first gives the call a turn; a body dropped before its call is done (the answer
/// fully sent while the guest still works, or the client gone) hands the call to a task of its
/// own to finish, as a spawned call would have. If the call failed, what the guest wrote goes
/// out and then an error in place of the body's end, so the connection is cut: a body whose
/// writer is gone ends like a finished one, and the client would take it for the whole answer.
pub(crate) struct DrivenBody<F>
where
    F: Future<Output = Result<(), Failure>> + Send + Unpin + 'static,
{
    body: WorkloadBody,
    producer: Option<F>,
    failure: Option<Failure>,
    workload: Arc<str>,
    span: tracing::Span,
}

impl<F> DrivenBody<F>
where
    F: Future<Output = Result<(), Failure>> + Send + Unpin + 'static,
{
    /// `body`, driving `producer` (`workload`'s call, traced in `span`) as it is read.
    pub(crate) fn new(
        body: WorkloadBody,
        producer: F,
        workload: Arc<str>,
        span: tracing::Span,
    ) -> Self {
        DrivenBody {
            body,
            producer: Some(producer),
            failure: None,
            workload,
            span,
        }
    }
}

impl<F> Body for DrivenBody<F>
where
    F: Future<Output = Result<(), Failure>> + Send + Unpin + 'static,
{
    type Data = Bytes;
    type Error = <WorkloadBody as Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(producer) = &mut this.producer {
            let _entered = this.span.enter();
            if let Poll::Ready(outcome) = Pin::new(producer).poll(cx) {
                this.producer = None;
                if let Err(failure) = outcome {
                    tracing::warn!(
                        workload = %this.workload,
                        "the answer was cut off: the guest failed after it started: {failure}"
                    );
                    this.failure = Some(failure);
                }
            }
        }
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(this.failure.take().map(|failure| {
                Err(HttpError::InternalError(Some(format!(
                    "the guest failed after its answer started: {failure}"
                ))))
            })),
            frame => frame,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failure.is_none() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl<F> Drop for DrivenBody<F>
where
    F: Future<Output = Result<(), Failure>> + Send + Unpin + 'static,
{
    fn drop(&mut self) {
        let Some(producer) = self.producer.take() else {
            return;
        };
        // Outside a runtime (a response dropped by a synchronous caller) there is nothing to
        // finish it on, and dropping it cancels the call as dropping any guest call does.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(producer.instrument(self.span.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body_util::{BodyExt as _, StreamBody};
    use tokio::sync::{mpsc, oneshot};

    use super::*;

    /// A body fed by a channel, as a guest's outgoing body is, and the sender that feeds it.
    fn channel_body() -> (mpsc::Sender<Bytes>, WorkloadBody) {
        let (sender, mut receiver) = mpsc::channel::<Bytes>(1);
        let frames = futures::stream::poll_fn(move |cx| {
            receiver
                .poll_recv(cx)
                .map(|chunk| chunk.map(|chunk| Ok::<_, Infallible>(Frame::data(chunk))))
        });
        let body = StreamBody::new(frames)
            .map_err(|never| match never {})
            .boxed_unsync();
        (sender, body)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn reading_the_body_drives_its_producer_to_the_end() {
        let (sender, body) = channel_body();
        // Nothing else runs this producer: only reads of the body can make it progress.
        let producer = Box::pin(async move {
            for chunk in ["a", "b", "c"] {
                sender.send(Bytes::from(chunk)).await.unwrap();
                tokio::task::yield_now().await;
            }
            Ok(())
        });
        let body = DrivenBody::new(body, producer, "test".into(), tracing::Span::none());
        let collected = tokio::time::timeout(std::time::Duration::from_secs(5), body.collect())
            .await
            .expect("reading the body drove the producer")
            .unwrap()
            .to_bytes();
        assert_eq!(collected, Bytes::from("abc"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_producer_that_fails_ends_the_body_in_an_error_after_what_it_wrote() {
        let (sender, body) = channel_body();
        let producer = Box::pin(async move {
            sender.send(Bytes::from("half")).await.unwrap();
            // Its writer gone, the channel ends as a finished body would.
            drop(sender);
            Err(Failure::Trap("trapped".into()))
        });
        let mut body = DrivenBody::new(body, producer, "test".into(), tracing::Span::none());
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, Bytes::from("half"));
        let end = body.frame().await.expect("an error, not the end");
        let error = end.expect_err("the body ends in an error").to_string();
        assert!(error.contains("trapped"), "{error}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_body_dropped_early_leaves_its_producer_to_finish() {
        let (sender, body) = channel_body();
        let (finished, is_finished) = oneshot::channel();
        let producer = Box::pin(async move {
            sender.send(Bytes::from("head")).await.unwrap();
            // The reader is gone by now; the work after the answer still has to happen.
            drop(sender);
            tokio::task::yield_now().await;
            finished.send(()).unwrap();
            Ok(())
        });
        let mut body = DrivenBody::new(body, producer, "test".into(), tracing::Span::none());
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, Bytes::from("head"));
        drop(body);
        tokio::time::timeout(std::time::Duration::from_secs(5), is_finished)
            .await
            .expect("the producer finished after its body was dropped")
            .unwrap();
    }
}
