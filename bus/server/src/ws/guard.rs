//! `FrameGuard`: enforces `max_frame_bytes` on each incoming frame as its
//! header arrives, before any of its payload is buffered.
//!
//! actix-http's frame parser checks a frame's length only once the whole
//! frame is in its buffer, so a header that announces 2^40 bytes makes it
//! buffer whatever follows. The guard sits between the request payload and
//! that parser: it reads every frame header as the bytes pass, and ends the
//! stream with an error at the first header over the limit. The session
//! then closes with 1009 at once, and the socket is not read any further.

use actix_web::error::PayloadError;
use bytes::Bytes;
use futures_util::Stream;
use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

/// The longest frame header: 2 bytes, an 8-byte length and a 4-byte mask.
const MAX_HEADER: usize = 14;

/// Where the guard is in the byte stream.
enum State {
    /// Reading a header; `have` of its bytes are in `buf`.
    Header { buf: [u8; MAX_HEADER], have: usize },
    /// Passing `left` bytes of payload through.
    Payload { left: u64 },
    /// A header was over the limit: the stream has ended.
    Refused,
}

/// Wraps a WebSocket connection's incoming byte stream.
pub(super) struct FrameGuard<S> {
    inner: S,
    max_frame_bytes: u64,
    state: State,
    /// Set when a header was over the limit, for the session to tell a
    /// refused frame (close 1009) from other stream errors.
    refused: Rc<Cell<bool>>,
}

impl<S> FrameGuard<S> {
    pub(super) fn new(inner: S, max_frame_bytes: usize, refused: Rc<Cell<bool>>) -> Self {
        FrameGuard {
            inner,
            max_frame_bytes: u64::try_from(max_frame_bytes).unwrap_or(u64::MAX),
            state: State::Header {
                buf: [0; MAX_HEADER],
                have: 0,
            },
            refused,
        }
    }

    /// Follows the frame boundaries through `chunk`; false at a header
    /// that announces more than the limit.
    fn scan(&mut self, mut chunk: &[u8]) -> bool {
        while !chunk.is_empty() {
            match &mut self.state {
                State::Refused => return false,
                State::Payload { left } => {
                    let n = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(chunk.len());
                    chunk = &chunk[n..];
                    *left -= n as u64;
                    if *left == 0 {
                        self.state = State::Header {
                            buf: [0; MAX_HEADER],
                            have: 0,
                        };
                    }
                }
                State::Header { buf, have } => {
                    let need = header_len(&buf[..*have]);
                    let n = (need - *have).min(chunk.len());
                    buf[*have..*have + n].copy_from_slice(&chunk[..n]);
                    *have += n;
                    chunk = &chunk[n..];
                    // The first two bytes tell how long the rest is.
                    if *have < header_len(&buf[..*have]) {
                        continue;
                    }
                    let len = payload_len(&buf[..*have]);
                    if len > self.max_frame_bytes {
                        self.state = State::Refused;
                        return false;
                    }
                    self.state = if len == 0 {
                        State::Header {
                            buf: [0; MAX_HEADER],
                            have: 0,
                        }
                    } else {
                        State::Payload { left: len }
                    };
                }
            }
        }
        true
    }
}

/// The length of a header that starts with `head` (2 until that much is known).
fn header_len(head: &[u8]) -> usize {
    let [_, second, ..] = head else {
        return 2;
    };
    let ext = match second & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    2 + ext + mask
}

/// The payload length a whole header announces.
fn payload_len(header: &[u8]) -> u64 {
    match header[1] & 0x7f {
        126 => u64::from(u16::from_be_bytes([header[2], header[3]])),
        127 => {
            let mut len = [0; 8];
            len.copy_from_slice(&header[2..10]);
            u64::from_be_bytes(len)
        }
        n => u64::from(n),
    }
}

impl<S> Stream for FrameGuard<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if matches!(self.state, State::Refused) {
            return Poll::Ready(None);
        }
        let item = std::task::ready!(Pin::new(&mut self.inner).poll_next(cx));
        Poll::Ready(match item {
            Some(Ok(chunk)) if !self.scan(&chunk) => {
                self.refused.set(true);
                Some(Err(PayloadError::Overflow))
            }
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn guard(chunks: Vec<Vec<u8>>, max: usize) -> (Vec<Result<usize, ()>>, bool) {
        let refused = Rc::new(Cell::new(false));
        let inner = futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, PayloadError>(Bytes::from(c))),
        );
        let guard = FrameGuard::new(inner, max, refused.clone());
        let out = futures_executor_lite(guard);
        (out, refused.get())
    }

    /// Drives the guard to its end without a runtime (the inner stream is
    /// always ready).
    fn futures_executor_lite<S>(mut s: S) -> Vec<Result<usize, ()>>
    where
        S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
    {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut out = Vec::new();
        while let Poll::Ready(Some(item)) = s.poll_next_unpin(&mut cx) {
            out.push(item.map(|b| b.len()).map_err(|_| ()));
        }
        out
    }

    /// A masked client frame header announcing `len` bytes.
    fn header(len: u64) -> Vec<u8> {
        let mut h = vec![0x82];
        if len < 126 {
            h.push(0x80 | len as u8);
        } else if len <= u64::from(u16::MAX) {
            h.push(0x80 | 126);
            h.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            h.push(0x80 | 127);
            h.extend_from_slice(&len.to_be_bytes());
        }
        h.extend_from_slice(&[1, 2, 3, 4]);
        h
    }

    #[test]
    fn frames_within_the_limit_pass_whatever_the_chunking() {
        let mut bytes = Vec::new();
        for len in [0u64, 5, 125, 126, 1000, 70_000] {
            bytes.extend(header(len));
            bytes.extend(std::iter::repeat_n(7u8, len as usize));
        }
        for split in [1, 3, 13, 4096] {
            let chunks: Vec<Vec<u8>> = bytes.chunks(split).map(<[u8]>::to_vec).collect();
            let n = chunks.len();
            let (out, refused) = guard(chunks, 70_000);
            assert!(!refused, "split {split}");
            assert_eq!(out.len(), n);
            assert!(out.iter().all(Result::is_ok));
        }
    }

    #[test]
    fn a_header_over_the_limit_ends_the_stream_before_its_payload() {
        let mut first = header(10);
        first.extend([0; 10]);
        // The big header arrives a byte at a time, then its payload.
        let mut chunks = vec![first];
        chunks.extend(header(1 << 40).into_iter().map(|b| vec![b]));
        chunks.push(vec![0; 4096]);
        let (out, refused) = guard(chunks, 65_536);
        assert!(refused);
        // The first frame's chunk, the header's first 13 bytes, then the error.
        assert_eq!(out.len(), 15);
        assert_eq!(out.last(), Some(&Err(())));
        assert!(out[..14].iter().all(Result::is_ok));
    }
}
