//! Socket I/O of a connection's task: reads into the engine (in place,
//! through a per-worker scratch buffer, the receive low-water mark) and
//! writes of its output.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::ServerConfig;
use crate::protocol::Connection;
use crate::runtime::Stream;

thread_local! {
    /// Per-worker read buffer: plain sockets are read into it and only the
    /// bytes received are copied to the connection, so an idle connection
    /// holds no read buffer of its own.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Read once into the engine's receive buffer.
#[inline]
pub(super) fn poll_read_into(
    cx: &mut std::task::Context<'_>,
    stream: &mut Stream,
    conn: &mut Connection,
    config: &ServerConfig,
    lowat: &mut LowWater,
) -> std::task::Poll<std::io::Result<usize>> {
    // `config.read_chunk` is read only by the reads that use it: a small
    // frame read in place does not touch the configuration's cache line.
    let awaited = conn.awaited_bytes();
    lowat.follow(stream, awaited);
    if awaited > 0 {
        // The rest of a large frame: read it in place behind its start.
        let buf = conn.receive_buffer();
        buf.reserve(stream.frame_room(awaited, buf.len(), config.read_chunk));
        return poll_read_buf(cx, stream, buf);
    }
    if let Stream::Plain(tcp) = stream {
        // Room for a few more small frames: read in place (an emptied
        // buffer first takes back the room its consumed front held).
        let buf = conn.receive_buffer();
        if buf.is_empty() && buf.capacity() < SMALL_READ {
            // Whether it could is what the room below shows.
            let _ = buf.try_reclaim(SMALL_READ);
        }
        let room = buf.capacity() - buf.len();
        if buf.capacity() <= IN_PLACE_MAX && room >= SMALL_READ {
            let n = std::task::ready!(poll_read_buf(cx, tcp, buf))?;
            if n < room {
                return std::task::Poll::Ready(Ok(n));
            }
            // The room filled up: take what else is waiting (a burst of
            // frames) at once, through the scratch buffer. Whatever that
            // read meets (nothing yet, the end, an error) the next one
            // meets again.
            let more = match poll_read_scratch(cx, tcp, conn, config.read_chunk) {
                std::task::Poll::Ready(Ok(more)) => more,
                _ => 0,
            };
            return std::task::Poll::Ready(Ok(n + more));
        }
        return poll_read_scratch(cx, tcp, conn, config.read_chunk);
    }
    let buf = conn.receive_buffer();
    buf.reserve(config.read_chunk);
    poll_read_buf(cx, stream, buf)
}

/// Read once, up to `chunk` bytes, into the worker's scratch buffer and
/// copy what arrived to the engine, which then keeps [`RECEIVE_ROOM`].
/// `poll_read` rather than `readable` + `try_read`: after a short read
/// tokio knows the socket is drained and waits for the next edge instead
/// of spending a `recvfrom` to learn it.
pub(super) fn poll_read_scratch(
    cx: &mut std::task::Context<'_>,
    tcp: &mut TcpStream,
    conn: &mut Connection,
    chunk: usize,
) -> std::task::Poll<std::io::Result<usize>> {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        if scratch.len() < chunk {
            scratch.resize(chunk, 0);
        }
        let mut buf = tokio::io::ReadBuf::new(&mut scratch[..chunk]);
        std::task::ready!(std::pin::Pin::new(&mut *tcp).poll_read(cx, &mut buf))?;
        let received = buf.filled();
        conn.receive_buffer()
            .reserve(received.len().max(RECEIVE_ROOM));
        conn.receive(received);
        std::task::Poll::Ready(Ok(received.len()))
    })
}

/// Read once into `buf`'s spare capacity.
pub(super) fn poll_read_buf(
    cx: &mut std::task::Context<'_>,
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut bytes::BytesMut,
) -> std::task::Poll<std::io::Result<usize>> {
    let mut spare = tokio::io::ReadBuf::uninit(buf.spare_capacity_mut());
    std::task::ready!(std::pin::Pin::new(stream).poll_read(cx, &mut spare))?;
    let n = spare.filled().len();
    // SAFETY: `poll_read` initialised the first `n` spare bytes.
    unsafe { buf.set_len(buf.len() + n) };
    std::task::Poll::Ready(Ok(n))
}

/// The socket's receive low-water mark. While the rest of a large frame is
/// awaited, the kernel is asked to report the socket readable once that
/// much has arrived (it caps the mark at half its largest receive buffer)
/// instead of at every segment: fewer reads and far fewer sleeps and
/// wake-ups, which the sending peer pays for too. End of stream and errors
/// are reported regardless. A timer that fires meanwhile pauses it, so that
/// bytes already queued count as heard before keepalive or a deadline acts.
pub(super) struct LowWater {
    /// The mark as set (1: the default).
    pub(super) current: usize,
    /// Until the next read, stay at 1.
    pub(super) paused: bool,
}

impl LowWater {
    pub(super) const fn new() -> LowWater {
        LowWater {
            current: 1,
            paused: false,
        }
    }

    /// Follow the engine: the awaited rest of a held frame, else 1.
    #[inline]
    pub(super) fn follow(&mut self, stream: &Stream, awaited: usize) {
        let want = if self.paused { 1 } else { awaited.max(1) };
        self.set(stream, want);
    }

    /// Back to 1 until the next read; false if it was already.
    pub(super) fn pause(&mut self, stream: &Stream) -> bool {
        self.paused = true;
        let was_raised = self.current > 1;
        self.set(stream, 1);
        was_raised
    }

    pub(super) fn set(&mut self, stream: &Stream, want: usize) {
        let Stream::Plain(tcp) = stream else {
            return;
        };
        let want = want.min(i32::MAX as usize);
        if want == self.current {
            return;
        }
        self.current = want;
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            let value = want as libc::c_int;
            // SAFETY: a valid descriptor and an option value of the stated
            // size. Failure only loses the optimisation.
            unsafe {
                libc::setsockopt(
                    tcp.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVLOWAT,
                    (&value as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
        #[cfg(not(unix))]
        let _ = tcp;
    }
}

/// When the peer last acknowledged our data, as the kernel saw it (Linux:
/// `TCP_INFO`'s `tcpi_last_ack_recv`; `None` elsewhere or on failure). A
/// write the kernel took proves nothing about a peer behind a cut link (the
/// send buffer takes its fill whatever happens to the link); its ACKs do.
/// `None` too for an HTTP/2 stream, whose TCP connection its HTTP/2 task
/// owns: there the pong timeout alone judges.
pub(super) fn last_ack(stream: &Stream) -> Option<tokio::time::Instant> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let tcp = stream.tcp()?;
        // SAFETY: `tcp_info` holds only integers, for which all-zero bytes
        // are a valid value.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: the descriptor is the open socket `stream` owns, borrowed
        // for the call; `info` is writable for `len` bytes, and the kernel
        // writes at most `len` (an older kernel fewer, leaving zeros).
        let r = unsafe {
            libc::getsockopt(
                tcp.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut info as *mut libc::tcp_info).cast(),
                &mut len,
            )
        };
        if r != 0 {
            return None;
        }
        let age = std::time::Duration::from_millis(info.tcpi_last_ack_recv.into());
        tokio::time::Instant::now().checked_sub(age)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = stream;
        None
    }
}

/// Write what the socket takes now, without waiting: true when all of it
/// went (the usual case: no future, no overflow watch). Errors are left for
/// [`write_out`] to meet and report.
#[inline]
pub(super) fn write_now(stream: &Stream, conn: &mut Connection) -> bool {
    let Stream::Plain(tcp) = stream else {
        return false;
    };
    drain_output(conn, |pieces| match pieces {
        [one] => tcp.try_write(one),
        _ => tcp.try_write_vectored(pieces),
    })
    .is_ok()
}

pub(super) async fn write_out(stream: &mut Stream, conn: &mut Connection) -> std::io::Result<()> {
    std::future::poll_fn(|cx| {
        if let Stream::H2(h2) = stream {
            return h2.poll_send_output(cx, conn);
        }
        let mut stream = std::pin::Pin::new(&mut *stream);
        let written = drain_output(conn, |pieces| {
            let poll = match pieces {
                [one] => stream.as_mut().poll_write(cx, one),
                _ => stream.as_mut().poll_write_vectored(cx, pieces),
            };
            match poll {
                std::task::Poll::Ready(r) => r,
                std::task::Poll::Pending => Err(std::io::ErrorKind::WouldBlock.into()),
            }
        });
        match written {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::task::Poll::Pending,
            r => std::task::Poll::Ready(r),
        }
    })
    .await?;
    stream.flush().await
}

/// Write the pending output through `write` until all of it went or
/// `write` fails (`WouldBlock`: not now). One piece, the usual case, goes
/// by plain `send`, cheaper in the kernel than `writev`.
pub(super) fn drain_output(
    conn: &mut Connection,
    mut write: impl FnMut(&[std::io::IoSlice<'_>]) -> std::io::Result<usize>,
) -> std::io::Result<()> {
    while conn.has_output() {
        let mut slices = [std::io::IoSlice::new(&[]); 8];
        let count = conn.output_slices(&mut slices);
        let n = write(&slices[..count])?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        conn.advance_output(n);
    }
    conn.release_buffers(KEEP_BUFFER);
    Ok(())
}

/// Buffers above this size are given back once empty, so that one large
/// message does not pin its memory on an idle connection.
pub(super) const KEEP_BUFFER: usize = 64 * 1024;

/// A connection that received something keeps [`RECEIVE_ROOM`] bytes of
/// receive buffer, so that small frames are read in place while at least
/// [`SMALL_READ`] of it is free, rather than through the worker's scratch
/// buffer and copied. Messages lent to the handler leave the buffer's
/// allocation in place; each frame header consumed shifts its start, so the
/// room runs out every few dozen frames and is then reclaimed at once.
pub(super) const RECEIVE_ROOM: usize = 256;

pub(super) const SMALL_READ: usize = 64;

/// Larger receive buffers belong to connections carrying large messages,
/// whose payloads are split off and sent on from where they arrived:
/// reading into what is left behind them mostly means moving it again
/// (64 KiB echoes had rounds at +25 % CPU that way). They read through the
/// scratch buffer.
pub(super) const IN_PLACE_MAX: usize = 16 * 1024;

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// The socket's SO_RCVLOWAT as the kernel reports it.
    fn mark(stream: &Stream) -> i32 {
        use std::os::fd::AsRawFd;
        let Stream::Plain(tcp) = stream else {
            unreachable!("a plain socket")
        };
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: a valid descriptor, and room for the option's value.
        let r = unsafe {
            libc::getsockopt(
                tcp.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVLOWAT,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(r, 0);
        value
    }

    #[tokio::test]
    async fn the_low_water_mark_follows_a_held_frame_and_pauses_for_timers() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let stream = Stream::Plain(listener.accept().await.unwrap().0);
        let mut lowat = LowWater::new();
        assert_eq!(mark(&stream), 1);
        // The rest of a large frame is awaited: readable once it is all here.
        lowat.follow(&stream, 50_000);
        assert_eq!(mark(&stream), 50_000);
        // Nothing awaited: every byte counts again.
        lowat.follow(&stream, 0);
        assert_eq!(mark(&stream), 1);
        // A timer pauses a raised mark (and says so) until the next read.
        lowat.follow(&stream, 50_000);
        assert!(lowat.pause(&stream));
        assert_eq!(mark(&stream), 1);
        assert!(!lowat.pause(&stream), "already at 1");
        lowat.follow(&stream, 50_000);
        assert_eq!(mark(&stream), 1, "paused until a read");
        lowat.paused = false;
        lowat.follow(&stream, 50_000);
        assert_eq!(mark(&stream), 50_000);
    }
}
