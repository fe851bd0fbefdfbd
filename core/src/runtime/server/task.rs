//! An open connection's task: one loop that writes, waits for the
//! mailbox, the socket or the timer, and hands events to the handler.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::admission::{Admitted, RateLimit};
use super::budget::{Share, OVERLOAD_CLOSE};
use super::handler::{call_handler, CloseInfo, OpenInfo};
use super::io::{last_ack, poll_read_into, write_now, write_out, LowWater, KEEP_BUFFER};
use super::mailbox::{Mailbox, OVERFLOW, READY, STOP};
use super::opening::{Accepted, Registered};
use super::{ConnId, Limit, Shared, POLICY_CLOSE};
use crate::protocol::{CloseFrame, Connection, Event, Polled, State};
use crate::runtime::Stream;

/// What woke a connection's task.
pub(super) enum Wake {
    Signals(u8),
    Read(std::io::Result<usize>),
    Timer,
}

/// An open connection's state, in one allocation apart from its task. The
/// task reaches most of it on every message: laid out as written, hot
/// fields first (the engine's too, see [`Connection`]), a message touches
/// few cache lines, and with many connections each one is a miss.
#[repr(C, align(64))]
pub(super) struct Live {
    pub(super) mailbox: Arc<Mailbox>,
    pub(super) id: ConnId,
    pub(super) lowat: LowWater,
    /// When the timer is set to fire, if it is.
    pub(super) armed: Option<Instant>,
    pub(super) close_deadline: Option<Instant>,
    pub(super) stream: Stream,
    pub(super) rate: RateLimit,
    pub(super) ping_sent: bool,
    pub(super) eof: bool,
    pub(super) conn: Connection,
    pub(super) last_heard: Instant,
    /// Dropped with the rest when the task ends: unregisters the connection,
    /// then gives back its place under the connection limits.
    pub(super) registered: Registered,
    pub(super) _admitted: Admitted,
}

// Layout guards (64-bit Linux: the socket and clock types differ elsewhere): a field added or moved changes these
// numbers and fails the build instead of silently pushing what every
// message touches onto another cache line. Change them only together with
// a layout that still keeps the hot fields together.
#[cfg(all(target_pointer_width = "64", target_os = "linux"))]
const _: () = {
    use std::mem::{offset_of, size_of};
    // The task's per-message fields in the first two cache lines (the
    // socket's size differs between debug and release builds of tokio)...
    assert!(offset_of!(Live, lowat) == 16);
    assert!(offset_of!(Live, stream) == 64);
    assert!(offset_of!(Live, rate) == 64 + size_of::<Stream>());
    assert!(offset_of!(Live, eof) < 128 + 8);
    // ...the engine right after them (its own hot fields first)...
    assert!(offset_of!(Live, conn) <= 136);
    // ...and what only keepalive and the end need, last.
    assert!(offset_of!(Live, last_heard) == offset_of!(Live, conn) + size_of::<Connection>());
    // Twelve cache lines (the engine's tally, for the metrics, took the
    // last one).
    assert!(size_of::<Live>() <= 768);
};

pub(super) async fn run_connection(
    shared: Arc<Shared>,
    mut live: Box<Live>,
    info: Arc<OpenInfo>,
    accepted: Accepted,
) {
    let config = &shared.config;
    // Given back when dropped, however the task ends (even dropped by a
    // runtime shutting down).
    let mut share = Share::new(&shared);
    let live = &mut *live;
    accepted.opened();
    call_handler(live.id, &mut live.conn, &live.mailbox, |c| {
        shared.handler.on_open(c, &info)
    });
    // The handler keeps what it wants of it; the task keeps only the id.
    drop(info);
    // Frames the client pipelined behind its request are already here.
    let mut outcome: Option<CloseInfo> = dispatch(&shared, live);
    // One timer for keepalive and the close handshake, made when first
    // needed (without keepalive, only a closing connection needs it), armed
    // at or before the earliest deadline and re-armed only when it fires
    // early: traffic moves the keepalive deadline without touching the
    // timer wheel.
    let mut timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
    // Keepalive pings (the hixie drafts have none), decided once: the
    // configuration is not read per message.
    let keepalive = config
        .ping_interval
        .filter(|_| live.conn.draft().has_ping());

    loop {
        // What the engine counted since the last turn, for the metrics.
        live.mailbox.tally.store(live.conn.tally());
        // Handles refuse commands from here on, even while the last frames
        // (our close among them) are still being written.
        if live.conn.state() != State::Open {
            live.mailbox.set_closed();
        }
        // Write what the engine produced (what the socket takes at once),
        // then count what is still held against the server's budget: a
        // connection that would take it past the limit is closed.
        let flushed = !live.conn.has_output() || write_now(&live.stream, &mut live.conn);
        if !share.update(&live.conn) {
            outcome = Some(over_budget(&mut live.conn, config.max_buffered_total));
            // What it held is dropped: its share goes back now (shrinking
            // always succeeds), not when the task ends a second later, so
            // the connections still within the budget can use it.
            share.update(&live.conn);
            break;
        }
        // A peer that does not read stalls the rest of the write, which the
        // overflow signal and keepalive cut short.
        if !flushed {
            // What the handler sent straight into the engine (`Conn::send`)
            // counts against the limit as the handle's sends do: without
            // this a stuck peer held all of it, and its task, for ever.
            if live.conn.output_len() > config.max_send_buffer {
                outcome.get_or_insert_with(|| overflowed(&shared));
                break;
            }
            match write_stuck(live, keepalive, config.pong_timeout).await {
                Stuck::Written => {}
                Stuck::Failed => break,
                Stuck::Overflow => {
                    outcome.get_or_insert_with(|| overflowed(&shared));
                    break;
                }
                Stuck::Dead => {
                    outcome.get_or_insert_with(|| dropped("keepalive: the link took nothing"));
                    break;
                }
            }
            // What was written leaves the budget now, not at the next event
            // (a connection gone quiet would count it for ever). It only
            // shrinks, so this cannot fail.
            share.update(&live.conn);
        }
        if live.conn.state() != State::Open || live.eof {
            if live.conn.state() == State::Closed || live.eof {
                break;
            }
            if live.close_deadline.is_none() {
                live.close_deadline = Some(Instant::now() + config.close_timeout);
            }
        }
        if let Some(at) = next_wake(
            config.pong_timeout,
            keepalive,
            live.last_heard,
            live.ping_sent,
            live.close_deadline,
        ) {
            if live.armed.is_none_or(|armed| at < armed) {
                match &mut timer {
                    Some(timer) => timer.as_mut().reset(at),
                    None => timer = Some(Box::pin(tokio::time::sleep_until(at))),
                }
                live.armed = Some(at);
            }
        }
        // Commands and signals first, then the socket, then the clock. The
        // mailbox's waker is registered only when the task is to sleep.
        let wake = std::future::poll_fn(|cx| {
            use std::future::Future;
            use std::task::Poll;
            const ANY: u8 = READY | OVERFLOW | STOP;
            if let Some(signals) = live.mailbox.take_raised(ANY) {
                return Poll::Ready(Wake::Signals(signals));
            }
            if let Poll::Ready(read) = poll_read_into(
                cx,
                &mut live.stream,
                &mut live.conn,
                config,
                &mut live.lowat,
            ) {
                return Poll::Ready(Wake::Read(read));
            }
            if let (Some(_), Some(timer)) = (live.armed, &mut timer) {
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wake::Timer);
                }
            }
            live.mailbox.poll_signals(cx, ANY).map(Wake::Signals)
        })
        .await;
        match wake {
            Wake::Signals(signals) => {
                if signals & OVERFLOW != 0 {
                    outcome = Some(overflowed(&shared));
                    break;
                }
                if signals & READY != 0 {
                    // Apply everything queued before writing once.
                    live.mailbox.apply_all(live.id, &mut live.conn);
                }
                if signals & STOP != 0 && live.conn.state() == State::Open {
                    // Cannot fail: the engine is open and 1001 may be sent on
                    // every draft (hixie's close carries no code).
                    let _ = live.conn.close(Some(1001), "server shutting down");
                    if live.conn.state() == State::Closed {
                        outcome = Some(CloseInfo {
                            code: 1001,
                            reason: "server shutting down".into(),
                            clean: true,
                        });
                    }
                }
            }
            Wake::Read(read) => {
                match read {
                    Ok(0) => {
                        live.eof = true;
                        if let Some(Event::Close(frame)) = live.conn.receive_eof() {
                            outcome = Some(CloseInfo {
                                code: frame.code,
                                reason: frame.reason,
                                clean: live.conn.close_was_clean(),
                            });
                        }
                    }
                    Ok(_) => {
                        live.lowat.paused = false;
                        // Only keepalive needs the time (a clock read per
                        // message otherwise).
                        if keepalive.is_some() {
                            live.last_heard = Instant::now();
                        }
                        live.ping_sent = false;
                        if let Some(close) = dispatch(&shared, live) {
                            outcome = Some(close);
                        }
                        live.conn.release_buffers(KEEP_BUFFER);
                    }
                    Err(_) => {
                        outcome.get_or_insert_with(|| dropped("read error"));
                        break;
                    }
                }
            }
            Wake::Timer => {
                live.armed = None;
                let now = Instant::now();
                // Fired early: the deadline moved on since it was armed.
                let due = next_wake(
                    config.pong_timeout,
                    keepalive,
                    live.last_heard,
                    live.ping_sent,
                    live.close_deadline,
                );
                if due.is_none_or(|at| at > now) {
                    continue;
                }
                // Part of a large frame may be waiting under the low-water
                // mark: read it first (the deadline is still due after).
                if live.lowat.pause(&live.stream) {
                    continue;
                }
                if live.close_deadline.is_some_and(|d| now >= d) {
                    outcome.get_or_insert_with(|| dropped("close handshake timed out"));
                    break;
                }
                if live.ping_sent {
                    outcome = Some(dropped("keepalive pong timed out"));
                    break;
                }
                // Keepalive runs only on drafts with ping; a connection
                // already closing refuses it, and its close deadline acts.
                let _ = live.conn.send_ping(b"");
                live.ping_sent = true;
            }
        }
    }
    live.mailbox.set_closed();
    live.mailbox.discard(live.id);
    let over = outcome
        .as_ref()
        .is_some_and(|c| c.code == OVERLOAD_CLOSE && !c.clean);
    if over {
        // The close frame, if the peer takes it in time (plain or TLS).
        let brief = Duration::from_secs(1);
        let _ = tokio::time::timeout(brief, write_out(&mut live.stream, &mut live.conn)).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), live.stream.shutdown()).await;
    if over {
        // The peer is likely still sending: closing with its bytes unread
        // would reset the connection and could destroy our close frame
        // before it is read. Read and discard (briefly) instead.
        let _ = tokio::time::timeout(Duration::from_secs(1), discard(&mut live.stream)).await;
    }
    // hixie-75 closes by closing TCP: a close we started ends clean there.
    let close = outcome.unwrap_or_else(|| {
        if live.conn.close_was_clean() {
            CloseInfo {
                code: crate::protocol::NO_STATUS,
                reason: String::new(),
                clean: true,
            }
        } else {
            dropped("connection ended")
        }
    });
    live.mailbox.tally.store(live.conn.tally());
    live.registered.close_code = Some(close.code);
    shared.handler.on_close(live.id, &close);
}

/// How a write the socket did not take at once ended.
enum Stuck {
    Written,
    Failed,
    /// Commands for the connection overflowed its send buffer meanwhile.
    Overflow,
    /// Keepalive: nothing arrived and nothing left for a ping interval
    /// plus a pong timeout.
    Dead,
}

/// Writes out what the socket did not take at once. While the write waits
/// the task neither reads nor can send a ping, so keepalive is kept here:
/// a peer whose link takes no byte of ours for `ping_interval +
/// pong_timeout` since it was last heard (a link cut mid-transfer, without
/// FIN or RST) is as dead as a silent one. The peer's TCP acknowledging our
/// data, however slowly, proves it alive (where the kernel does not say,
/// output draining stands in for it: less sure, as the kernel's buffer
/// takes its fill from a dead link too).
async fn write_stuck(
    live: &mut Live,
    keepalive: Option<Duration>,
    pong_timeout: Duration,
) -> Stuck {
    let mut alive = live.last_heard;
    loop {
        let left = live.conn.output_len();
        let dead_at = keepalive.map(|interval| alive + interval + pong_timeout);
        let written = tokio::select! {
            biased;
            r = write_out(&mut live.stream, &mut live.conn) => r,
            _ = live.mailbox.wait(OVERFLOW) => return Stuck::Overflow,
            _ = sleep_until(dead_at) => {
                let (heard, at) = match last_ack(&live.stream) {
                    Some(acked) => (acked > alive, acked),
                    None => (live.conn.output_len() < left, Instant::now()),
                };
                if heard {
                    alive = at;
                    continue;
                }
                return Stuck::Dead;
            }
        };
        return match written {
            Ok(()) => Stuck::Written,
            Err(_) => Stuck::Failed,
        };
    }
}

/// Sleeps until `at`; forever without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// When the connection's task must next look at the clock: the keepalive
/// ping (the hixie drafts have none), its pong timeout, the close timeout.
pub(super) fn next_wake(
    pong_timeout: Duration,
    keepalive: Option<Duration>,
    last_heard: Instant,
    ping_sent: bool,
    close_deadline: Option<Instant>,
) -> Option<Instant> {
    let keepalive_at = keepalive.map(|interval| {
        if ping_sent {
            last_heard + interval + pong_timeout
        } else {
            last_heard + interval
        }
    });
    match (keepalive_at, close_deadline) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

pub(super) fn overflowed(shared: &Shared) -> CloseInfo {
    shared.metrics.hit(Limit::SendBuffer);
    let limit = shared.config.max_send_buffer;
    CloseInfo {
        code: POLICY_CLOSE,
        reason: format!("send buffer over {limit} bytes: peer not reading"),
        clean: false,
    }
}

/// The budget has no room for what `conn` holds: give up on the peer
/// (dropping what it holds; the close frame with [`OVERLOAD_CLOSE`] is
/// written on the way out) and say so.
#[cold]
fn over_budget(conn: &mut Connection, limit: usize) -> CloseInfo {
    let reason = "server busy: buffer budget reached, try again later";
    conn.abort(OVERLOAD_CLOSE, reason);
    tracing::debug!(limit, "connection closed over the buffer budget");
    CloseInfo {
        code: OVERLOAD_CLOSE,
        reason: reason.into(),
        clean: false,
    }
}

/// Read and drop everything until the peer's end of stream.
async fn discard(stream: &mut crate::runtime::Stream) {
    use tokio::io::AsyncReadExt;
    let mut sink = vec![0; 4096];
    while let Ok(1..) = stream.read(&mut sink).await {}
}

pub(super) fn dropped(reason: &str) -> CloseInfo {
    CloseInfo {
        code: crate::protocol::ABNORMAL,
        reason: reason.to_string(),
        clean: false,
    }
}

/// Hand every complete event to the handler. Returns how the connection
/// ended if it did.
pub(super) fn dispatch(shared: &Shared, live: &mut Live) -> Option<CloseInfo> {
    let handler = &shared.handler;
    let Live {
        conn,
        rate,
        id,
        mailbox,
        ..
    } = live;
    let (id, mailbox) = (*id, &**mailbox);
    loop {
        // The closure answers whether the message was within the rate
        // limit: a bool keeps the lending call's result in registers.
        let polled = conn.poll_lending(|conn, message| {
            let allowed = rate.allow();
            if allowed {
                call_handler(id, conn, mailbox, |c| handler.on_message(c, message));
            }
            allowed
        });
        match polled {
            Ok(Some(Polled::Message(true))) => continue,
            Ok(Some(Polled::Message(false))) => {
                // Refused only when already closing: the outcome below is
                // reported to the handler either way.
                let _ = conn.close(Some(POLICY_CLOSE), "message rate limit exceeded");
                shared.metrics.hit(Limit::Rate);
                return Some(CloseInfo {
                    code: POLICY_CLOSE,
                    reason: "message rate limit exceeded".into(),
                    clean: false,
                });
            }
            Ok(Some(Polled::Ping(d))) => call_handler(id, conn, mailbox, |c| handler.on_ping(c, d)),
            Ok(Some(Polled::Pong(d))) => call_handler(id, conn, mailbox, |c| handler.on_pong(c, d)),
            Ok(Some(Polled::Close(CloseFrame { code, reason }))) => {
                return Some(CloseInfo {
                    code,
                    reason,
                    clean: true,
                })
            }
            Ok(None) => return None,
            Err(e) => {
                // 1009: a frame, message or inflated message over its limit.
                if e.close_code() == 1009 {
                    shared.metrics.hit(Limit::MessageSize);
                }
                return Some(CloseInfo {
                    code: e.close_code(),
                    reason: e.to_string(),
                    clean: false,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wake_up_is_the_earliest_deadline() {
        let heard = Instant::now();
        let (interval, pong) = (Duration::from_secs(10), Duration::from_secs(3));
        assert_eq!(next_wake(pong, None, heard, false, None), None);
        // Keepalive: the ping is due an interval after the peer was heard,
        // and once sent its pong timeout runs on top.
        assert_eq!(
            next_wake(pong, Some(interval), heard, false, None),
            Some(heard + interval)
        );
        assert_eq!(
            next_wake(pong, Some(interval), heard, true, None),
            Some(heard + interval + pong)
        );
        // The close timeout alone, or whichever comes first.
        let soon = heard + Duration::from_secs(5);
        let late = heard + Duration::from_secs(60);
        assert_eq!(next_wake(pong, None, heard, false, Some(late)), Some(late));
        assert_eq!(
            next_wake(pong, Some(interval), heard, false, Some(soon)),
            Some(soon)
        );
        assert_eq!(
            next_wake(pong, Some(interval), heard, true, Some(late)),
            Some(heard + interval + pong)
        );
    }
}
