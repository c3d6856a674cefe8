//! A deadline on reading request bodies, for every route of every service.
//!
//! actix-web bounds the time to receive a request's head
//! (`http.request_head_timeout`), not its body: a client that sends headers
//! and then one byte every few seconds would hold a connection and its
//! buffers for as long as it likes. [`middleware`] wraps each request's body
//! so that reading it fails once `http.request_body_timeout` has passed since
//! the request arrived; the handler's read then ends with an
//! [`io::ErrorKind::TimedOut`] payload error, which [`is_timeout`] recognises
//! (the ingest-gateway and query-api answer it 408 `request_timeout`). Upgraded connections (WebSocket) are untouched:
//! their "body" is the socket's frames.

use std::{
    future::Future as _,
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use actix_web::{
    Error, HttpMessage as _,
    body::MessageBody,
    dev::{Payload, ServiceRequest, ServiceResponse},
    error::PayloadError,
    middleware::Next,
    web::Bytes,
};
use futures::Stream;
use tokio::time::{Instant, Sleep};

/// The message of the timeout error (also what [`is_timeout`] looks for).
const TIMED_OUT: &str = "request body not received within the body timeout";

/// A body stream that fails once its deadline passes.
struct Deadline<S> {
    inner: S,
    sleep: Pin<Box<Sleep>>,
    timeout: Duration,
    done: bool,
}

impl<S> Stream for Deadline<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(item)) => Poll::Ready(Some(item)),
            Poll::Pending => match self.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.done = true;
                    let message = format!("{TIMED_OUT} ({:?})", self.timeout);
                    Poll::Ready(Some(Err(PayloadError::Io(io::Error::new(io::ErrorKind::TimedOut, message)))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// Whether a body read failed because of [`middleware`]'s deadline.
pub fn is_timeout(error: &PayloadError) -> bool {
    matches!(error, PayloadError::Io(io) if io.kind() == io::ErrorKind::TimedOut)
}

/// The middleware: every request's body must arrive within `timeout` of the
/// request (`actix_web::middleware::from_fn`).
pub async fn middleware(
    timeout: Duration,
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    // An upgraded connection's "body" is the new protocol's stream (a
    // WebSocket's frames, for as long as the socket lives): no deadline.
    if req.head().upgrade() || req.headers().contains_key(actix_web::http::header::UPGRADE) {
        return next.call(req).await;
    }
    let body = req.take_payload();
    let deadline = Deadline {
        inner: body,
        sleep: Box::pin(tokio::time::sleep_until(Instant::now() + timeout)),
        timeout,
        done: false,
    };
    req.set_payload(Payload::Stream { payload: Box::pin(deadline) });
    next.call(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt as _;

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_arriving_fails_at_the_deadline() {
        // One chunk, then nothing: the next read fails once the deadline passes.
        let chunks = futures::stream::iter([Ok(Bytes::from_static(b"{"))]).chain(futures::stream::pending());
        let mut body = Deadline {
            inner: Box::pin(chunks),
            sleep: Box::pin(tokio::time::sleep(Duration::from_secs(10))),
            timeout: Duration::from_secs(10),
            done: false,
        };
        assert_eq!(body.next().await.unwrap().unwrap(), Bytes::from_static(b"{"));
        let started = Instant::now();
        let error = body.next().await.unwrap().unwrap_err();
        assert!(is_timeout(&error), "{error}");
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        assert!(body.next().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_complete_body_is_passed_through() {
        let chunks = futures::stream::iter([Ok(Bytes::from_static(b"ab")), Ok(Bytes::from_static(b"c"))]);
        let body = Deadline {
            inner: chunks,
            sleep: Box::pin(tokio::time::sleep(Duration::from_secs(1))),
            timeout: Duration::from_secs(1),
            done: false,
        };
        let read: Vec<Bytes> = body.map(Result::unwrap).collect().await;
        assert_eq!(read, [Bytes::from_static(b"ab"), Bytes::from_static(b"c")]);
        assert!(!is_timeout(&PayloadError::Overflow));
    }
}
