//! A body a WASI 0.3 instance writes (an answer, or an outgoing request's body), which ends in
//! an error instead of its end if the instance failed before the body was read to its end.
//!
//! A 0.3 guest streams a body from a task of its own, and usually writes its trailers (as
//! "none") when it makes the request or response. When the instance fails (a trap anywhere in
//! it, or a request past its timeout), its store goes, and with it the writer of every body in
//! flight: wasi:http then ends each such body exactly as if the guest had finished it, so a
//! client would take an answer cut short, and the component or server it sent a request to a
//! request body cut short, for the whole of it. What the guest wrote still goes out; the error
//! in place of the end makes hyper cut the connection (or the reader see a failed read).
//!
//! A body that the guest finished but that had not been read to its end when a sibling request
//! failed the instance is cut too: from the outside, a finished body and one whose writer died
//! look the same, and a body still going out belongs to a request in flight, which an
//! instance's failure fails.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use crate::{HttpError, WorkloadBody};

/// Whether an instance failed; set before its store (and every body it writes) goes.
#[derive(Clone, Default)]
pub(crate) struct InstanceFailed(Arc<AtomicBool>);

impl InstanceFailed {
    /// Marks the instance failed. Call it while the store is still alive.
    pub(crate) fn set(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether the instance failed.
    pub(crate) fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A body written by one instance, watching whether that instance failed.
pub(crate) struct InstanceBody {
    body: WorkloadBody,
    failed: InstanceFailed,
    workload: Arc<str>,
    /// What the body is, for the log and the error: "answer" or "request body".
    what: &'static str,
}

impl InstanceBody {
    /// `body` (an answer or a request body, as `what` says), written by `workload`'s instance
    /// whose failure `failed` records.
    pub(crate) fn new(
        body: WorkloadBody,
        failed: InstanceFailed,
        workload: Arc<str>,
        what: &'static str,
    ) -> Self {
        InstanceBody {
            body,
            failed,
            workload,
            what,
        }
    }
}

impl Body for InstanceBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(None) if this.failed.get() => {
                tracing::warn!(
                    workload = %this.workload,
                    "the {} was cut off: the instance writing it failed before it ended",
                    this.what
                );
                Poll::Ready(Some(Err(HttpError::InternalError(Some(format!(
                    "the instance writing the {} failed before it ended",
                    this.what
                ))))))
            }
            frame => frame,
        }
    }

    fn is_end_stream(&self) -> bool {
        // Only a body whose end has been read says so, and that read is where a failure shows.
        self.body.is_end_stream() && !self.failed.get()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt as _, Full};

    use super::*;

    fn body_of(text: &'static str) -> WorkloadBody {
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|never| match never {})
            .boxed_unsync()
    }

    #[tokio::test]
    async fn a_body_ends_well_while_its_instance_lives_and_in_an_error_once_it_failed() {
        let failed = InstanceFailed::default();
        let whole = InstanceBody::new(body_of("all of it"), failed.clone(), "w".into(), "answer");
        let collected = whole.collect().await.expect("ends well");
        assert_eq!(collected.to_bytes(), "all of it");

        let mut cut = InstanceBody::new(body_of("a piece"), failed.clone(), "w".into(), "answer");
        failed.set();
        let first = cut.frame().await.expect("a frame").expect("the data");
        assert_eq!(
            first.into_data().unwrap(),
            "a piece",
            "what was written goes out"
        );
        assert!(!cut.is_end_stream());
        let end = cut.frame().await.expect("an error in place of the end");
        assert!(end.is_err());
    }
}
