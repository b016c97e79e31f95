//! The server's socket under tungstenite: reads through a scratch buffer
//! shared by all connections on a thread, batches writes, and keeps no
//! buffer while a connection is idle.
//!
//! tungstenite reads in small chunks (chatd configures 256 bytes) into a
//! per-connection buffer; without help, each chunk is a `read` syscall. Here
//! a read takes whatever the socket holds into a per-thread scratch buffer;
//! what tungstenite did not ask for yet is kept aside only until it is
//! consumed. Writes are appended to a buffer that goes to the socket on
//! flush, so a batch of frames costs one `send`, and the buffer is released
//! once drained: a burst leaves nothing behind on the connection.
//!
//! Data frames are also written here directly ([`SockIo::queue_text`]):
//! server frames are unmasked, so a text frame is a header and the payload.
//! This keeps them out of tungstenite's own write buffer, which keeps the
//! capacity of the largest frame it ever wrote for as long as the
//! connection lives. Control frames (ping, pong, close) still go through
//! tungstenite, into the same buffer, in call order.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Size of the per-thread read scratch buffer: one `read` takes up to this.
const SCRATCH: usize = 64 * 1024;

/// Caller buffers at least this large are read into directly.
const DIRECT_READ: usize = 8 * 1024;

/// Buffered output above which a write first tries to drain to the socket.
const HIGH_WATER: usize = 256 * 1024;

thread_local! {
    static SCRATCH_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH]);
}

/// A stream (TCP, or TLS over it) with shared-scratch reads and batched
/// writes.
pub struct SockIo<S = TcpStream> {
    stream: S,
    /// Read from the socket, not yet handed to tungstenite (from `unread_pos`).
    unread: Vec<u8>,
    unread_pos: usize,
    /// Waiting to be written (from `out_pos`).
    out: Vec<u8>,
    out_pos: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> SockIo<S> {
    /// Wrap `stream`; `already_read` are bytes read past the HTTP head.
    pub fn new(stream: S, already_read: Vec<u8>) -> SockIo<S> {
        SockIo {
            stream,
            unread: already_read,
            unread_pos: 0,
            out: Vec::new(),
            out_pos: 0,
        }
    }

    /// Append one complete (unfragmented, unmasked) text frame carrying
    /// `payload`. It is sent on the next flush.
    pub fn queue_text(&mut self, payload: &[u8]) {
        let len = payload.len();
        self.out.reserve(len + 10);
        self.out.push(0x81); // FIN + text
        if len < 126 {
            self.out.push(len as u8);
        } else if let Ok(len) = u16::try_from(len) {
            self.out.push(126);
            self.out.extend_from_slice(&len.to_be_bytes());
        } else {
            self.out.push(127);
            self.out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        self.out.extend_from_slice(payload);
    }

    /// Bytes buffered for writing.
    pub fn pending_out(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Write what is buffered now, without waiting: `Some` when done (or
    /// failed), `None` when the socket is full and the rest must be
    /// flushed the usual way.
    pub fn try_flush(&mut self) -> Option<io::Result<()>> {
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        match self.poll_drain(&mut cx) {
            Poll::Ready(r) => Some(r),
            Poll::Pending => None,
        }
    }

    /// Write everything buffered; then release the buffer. The stream is
    /// flushed too: TLS keeps what the socket did not take yet.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_pos < self.out.len() {
            let n = ready!(Pin::new(&mut self.stream).poll_write(cx, &self.out[self.out_pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_pos += n;
        }
        self.out = Vec::new();
        self.out_pos = 0;
        Pin::new(&mut self.stream).poll_flush(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for SockIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.unread_pos < this.unread.len() {
            let rest = &this.unread[this.unread_pos..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.unread_pos += n;
            if this.unread_pos == this.unread.len() {
                this.unread = Vec::new();
                this.unread_pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        if buf.remaining() >= DIRECT_READ {
            return Pin::new(&mut this.stream).poll_read(cx, buf);
        }
        SCRATCH_BUF.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let mut rb = ReadBuf::new(&mut scratch[..]);
            ready!(Pin::new(&mut this.stream).poll_read(cx, &mut rb))?;
            let got = rb.filled();
            let n = got.len().min(buf.remaining());
            buf.put_slice(&got[..n]);
            if got.len() > n {
                this.unread = got[n..].to_vec();
                this.unread_pos = 0;
            }
            Poll::Ready(Ok(()))
        })
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for SockIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pending_out() >= HIGH_WATER {
            ready!(this.poll_drain(cx))?;
        }
        this.out.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_drain(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

    async fn pair() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (a, b) = tokio::join!(TcpStream::connect(addr), l.accept());
        (a.unwrap(), b.unwrap().0)
    }

    #[tokio::test]
    async fn frames_of_every_length_class_reach_a_tungstenite_client() {
        let (client, server) = pair().await;
        let mut io = SockIo::new(server, Vec::new());
        let payloads: Vec<String> = [0usize, 1, 125, 126, 127, 65_535, 65_536, 200_000]
            .iter()
            .map(|&n| "é".repeat(n / 2) + &"x".repeat(n % 2))
            .collect();
        for p in &payloads {
            io.queue_text(p.as_bytes());
        }
        let writer = tokio::spawn(async move {
            io.flush().await.unwrap();
            assert_eq!(io.pending_out(), 0);
            assert_eq!(io.out.capacity(), 0, "drained buffer is released");
            io
        });
        let mut ws = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        for p in &payloads {
            match ws.next().await.unwrap().unwrap() {
                Message::Text(t) => assert_eq!(t.as_str(), p),
                other => panic!("unexpected {other:?}"),
            }
        }
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn small_reads_come_from_one_socket_read_and_leave_nothing_behind() {
        let (mut client, server) = pair().await;
        client.write_all(&[7u8; 3000]).await.unwrap();
        let mut io = SockIo::new(server, b"head".to_vec());
        let mut got = Vec::new();
        let mut chunk = [0u8; 256];
        while got.len() < 3004 {
            let n = io.read(&mut chunk).await.unwrap();
            assert!(n > 0 && n <= 256);
            got.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(&got[..4], b"head");
        assert!(got[4..].iter().all(|&b| b == 7));
        assert!(io.unread.capacity() == 0 && io.unread_pos == 0);
    }

    #[tokio::test]
    async fn tungstenite_server_over_sockio_round_trips() {
        let (client, server) = pair().await;
        let config = WebSocketConfig::default()
            .read_buffer_size(256)
            .write_buffer_size(0);
        let mut srv = WebSocketStream::from_raw_socket(
            SockIo::new(server, Vec::new()),
            Role::Server,
            Some(config),
        )
        .await;
        let mut cl = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        let big = "y".repeat(50_000);
        cl.send(Message::text(big.clone())).await.unwrap();
        cl.send(Message::text("small")).await.unwrap();
        for want in [big.as_str(), "small"] {
            match srv.next().await.unwrap().unwrap() {
                Message::Text(t) => assert_eq!(t.as_str(), want),
                other => panic!("unexpected {other:?}"),
            }
        }
        // A ping through tungstenite and a direct frame, in call order.
        srv.send(Message::Ping(Default::default())).await.unwrap();
        srv.get_mut().queue_text(b"after ping");
        srv.flush().await.unwrap();
        match cl.next().await.unwrap().unwrap() {
            Message::Ping(_) => {}
            other => panic!("unexpected {other:?}"),
        }
        match cl.next().await.unwrap().unwrap() {
            Message::Text(t) => assert_eq!(t.as_str(), "after ping"),
            other => panic!("unexpected {other:?}"),
        }
    }
}
