//! Streamed response bodies for the huge-body and connection-reset faults.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::web::Bytes;
use futures::Stream;

const HUGE_PREFIX: &[u8] = br#"{"padding":""#;
const HUGE_SUFFIX: &[u8] = br#""}"#;

/// The smallest huge body: the JSON frame around an empty padding string.
pub(crate) const HUGE_MIN_BYTES: u64 = (HUGE_PREFIX.len() + HUGE_SUFFIX.len()) as u64;

/// Padding is sent in slices of this static buffer, so a body of any size costs no
/// allocation and no copying.
static PADDING: [u8; 64 * 1024] = [b'x'; 64 * 1024];

/// `{"padding":"xxx…"}` of an exact total length, produced chunk by chunk.
#[derive(Debug)]
pub(crate) struct HugeBody {
    stage: HugeStage,
    padding_left: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HugeStage {
    Prefix,
    /// Padding, then the closing suffix once none is left.
    Padding,
    Done,
}

impl HugeBody {
    /// A body of `max(total_bytes, HUGE_MIN_BYTES)` bytes.
    pub(crate) fn new(total_bytes: u64) -> Self {
        Self {
            stage: HugeStage::Prefix,
            padding_left: total_bytes.saturating_sub(HUGE_MIN_BYTES),
        }
    }

    /// The exact number of bytes the stream yields.
    pub(crate) fn len(&self) -> u64 {
        self.padding_left + HUGE_MIN_BYTES
    }
}

impl Stream for HugeBody {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let chunk = match self.stage {
            HugeStage::Prefix => {
                self.stage = HugeStage::Padding;
                Bytes::from_static(HUGE_PREFIX)
            }
            HugeStage::Padding if self.padding_left > 0 => {
                let len = usize::try_from(self.padding_left)
                    .map_or(PADDING.len(), |left| left.min(PADDING.len()));
                self.padding_left -= len as u64;
                Bytes::from_static(&PADDING[..len])
            }
            HugeStage::Padding => {
                self.stage = HugeStage::Done;
                Bytes::from_static(HUGE_SUFFIX)
            }
            HugeStage::Done => return Poll::Ready(None),
        };
        Poll::Ready(Some(Ok(chunk)))
    }
}

/// Sends the start of a JSON answer, then fails, which makes actix drop the connection.
///
/// Between the two it returns `Pending` once (waking itself at once): actix flushes its
/// write buffer whenever the body is pending, so the client really receives the status
/// line and the first bytes before the connection goes away.
#[derive(Debug, Default)]
pub(crate) struct ResetBody {
    step: u8,
}

const RESET_PARTIAL: &[u8] = br#"{"service":"mock","result":{"amount":"#;

impl Stream for ResetBody {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.step = self.step.saturating_add(1);
        match self.step {
            1 => Poll::Ready(Some(Ok(Bytes::from_static(RESET_PARTIAL)))),
            2 => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            _ => Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "mock connection reset (injected fault)",
            )))),
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use futures::executor::block_on;

    use super::*;

    fn collect(body: HugeBody) -> Vec<u8> {
        block_on(body.fold(Vec::new(), |mut all, chunk| async move {
            all.extend_from_slice(&chunk.expect("no error"));
            all
        }))
    }

    #[test]
    fn huge_body_has_exact_length_and_is_json() {
        for total in [0u64, 14, 15, 1_000, 64 * 1024 + 20, 300_001] {
            let body = HugeBody::new(total);
            let expected = total.max(HUGE_MIN_BYTES);
            assert_eq!(body.len(), expected);
            let bytes = collect(body);
            assert_eq!(bytes.len() as u64, expected);
            let value: serde_json::Value = serde_json::from_slice(&bytes).expect("valid JSON");
            assert!(value["padding"].is_string());
        }
    }

    #[test]
    fn reset_body_sends_bytes_then_fails() {
        let items: Vec<_> = block_on(ResetBody::default().take(2).collect());
        assert!(matches!(&items[0], Ok(bytes) if !bytes.is_empty()));
        assert!(items[1].is_err());
    }
}
