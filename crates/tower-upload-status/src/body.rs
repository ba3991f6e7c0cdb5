//! [`ResponseBody`]: the body of every answer of
//! [`UploadStatusService`](crate::UploadStatusService).

use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

/// The response body of [`UploadStatusService`](crate::UploadStatusService): a whole JSON
/// (or JSONP) answer, or a stream of Server-Sent Events (`command=watch`).
///
/// An answer is one frame with an exact size hint; an event stream yields its events as the
/// watched uploads change and ends after the last terminal status (or when the stream is
/// closed for lagging; see the [crate docs](crate#pushed-progress-server-sent-events)).
/// It never fails.
pub struct ResponseBody {
    kind: Kind,
}

enum Kind {
    /// `None` once handed out.
    Full(Option<Bytes>),
    /// Frames written by the stream's watcher task; ends when the task drops its sender.
    Events(mpsc::Receiver<Bytes>),
}

impl ResponseBody {
    pub(crate) fn full(data: Bytes) -> Self {
        Self {
            kind: Kind::Full((!data.is_empty()).then_some(data)),
        }
    }

    pub(crate) fn empty() -> Self {
        Self {
            kind: Kind::Full(None),
        }
    }

    pub(crate) fn events(frames: mpsc::Receiver<Bytes>) -> Self {
        Self {
            kind: Kind::Events(frames),
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.get_mut().kind {
            Kind::Full(data) => Poll::Ready(data.take().map(|data| Ok(Frame::data(data)))),
            Kind::Events(frames) => frames
                .poll_recv(cx)
                .map(|frame| frame.map(|data| Ok(Frame::data(data)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(data) => data.is_none(),
            Kind::Events(frames) => frames.is_closed() && frames.is_empty(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |data| data.len() as u64))
            }
            Kind::Events(_) => SizeHint::default(),
        }
    }
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("ResponseBody");
        match &self.kind {
            Kind::Full(data) => debug.field("len", &data.as_ref().map_or(0, Bytes::len)),
            Kind::Events(_) => debug.field("events", &true),
        };
        debug.finish()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test]
    async fn a_full_body_is_one_frame_with_its_size() {
        let body = ResponseBody::full(Bytes::from_static(b"{}"));
        assert_eq!(body.size_hint().exact(), Some(2));
        assert!(!body.is_end_stream());
        assert_eq!(body.collect().await.unwrap().to_bytes(), "{}");
        let empty = ResponseBody::empty();
        assert!(empty.is_end_stream());
        assert_eq!(empty.size_hint().exact(), Some(0));
    }

    #[tokio::test]
    async fn an_event_body_ends_with_its_sender() {
        let (tx, rx) = mpsc::channel(2);
        let body = ResponseBody::events(rx);
        assert_eq!(body.size_hint().exact(), None);
        tx.send(Bytes::from_static(b"a")).await.unwrap();
        tx.send(Bytes::from_static(b"b")).await.unwrap();
        drop(tx);
        assert_eq!(body.collect().await.unwrap().to_bytes(), "ab");
    }
}
