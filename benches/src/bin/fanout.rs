//! Fan-out load generator (issue 13): S subscribers spread round-robin over
//! N nodes of a cluster, one publisher on the first node; every subscriber
//! checks it receives every message exactly once and in order.
//!
//! ```text
//! fanout --nodes ws://127.0.0.1:P1/path,ws://127.0.0.1:P2/path,... [--subs 3000]
//!        [--proto plain|socketio] [--rate 0] [--window 32] [--size 64]
//!        [--duration 5] [--warmup 1] [--settle 1] [--drain 5] [--quiet 0.3]
//!        [--pids PID,PID,...] [--redis-pid PID] [--threads 1]
//! ```
//!
//! * A message is the text `fanout SEQ TS` padded with `x` to `--size`
//!   bytes (TS: nanoseconds since this process started, so latency is
//!   publish-to-receive on one clock). `--proto plain` sends it as is (a
//!   node broadcasts what a client sends: a polysocket chat node, or a
//!   Django Channels consumer that group_sends it); `--proto socketio`
//!   speaks Engine.IO 4 / Socket.IO 4 over the WebSocket (open packet `0`,
//!   namespace connect `40`, pings `2` answered `3`, events `42["msg",…]`).
//!   Receivers find the marker anywhere in a text message, so a node may
//!   wrap it (JSON chat events); messages without it are counted as
//!   `other` and ignored.
//! * The publisher sends at `--rate` messages/s (0: as fast as the window
//!   allows), never more than `--window` messages ahead of the slowest live
//!   subscriber: an overloaded cluster shows as a publish rate below the
//!   target and time spent waiting on the window (`window_wait_s`), not
//!   as an unbounded queue. Subscribers still receive what the publisher
//!   gets back of its own messages, which is drained and not counted.
//! * Deliveries and latencies count receipts within the measured window
//!   (after `--warmup`); lost, duplicated and out-of-order count every
//!   message published, checked per subscriber once it has the last one
//!   or, after the window, once no subscriber has received anything for
//!   `--drain` seconds (a late message is waited for while the backlog
//!   keeps moving; the window keeps that backlog bounded).
//! * Before publishing, every subscriber reads what the nodes sent it while
//!   the others connected (a chat node's join notices) until its socket is
//!   quiet for `--quiet` seconds (`before_run` in the report), so that
//!   backlog is not read inside the measured window.
//!
//! Prints one JSON object on stdout and a summary on stderr.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use polysocket_bench::measure::{add_latencies, percentiles_line, CpuWindow, Report};
use polysocket_bench::ws::{Ws, WsError};
use polysocket_bench::{die, raise_nofile, Args};

const MARKER: &[u8] = b"fanout ";
/// Handshakes in flight at once while connecting the subscribers.
const OPEN_CONCURRENCY: usize = 64;
/// `highest` of a subscriber that failed: the window ignores it.
const GONE: u64 = u64::MAX;

#[derive(Clone, Copy, PartialEq)]
enum Proto {
    Plain,
    SocketIo,
}

/// What subscribers and the publisher share.
struct Shared {
    /// The clock of the timestamps.
    base: Instant,
    /// Per subscriber: the highest sequence number received (0: none yet).
    highest: Vec<AtomicU64>,
    /// The last sequence number published, once publishing is over.
    last: AtomicU64,
    /// Receipts count for the rate between these (ns since `base`).
    measure_from: u64,
    end: u64,
    /// After `end`, subscribers stop waiting for the last messages once
    /// none of them received anything for this long.
    drain: Duration,
    /// When (ns since `base`) a subscriber last received a message.
    progress: AtomicU64,
    /// All subscribers are done: the publisher stops draining.
    done: tokio::sync::Notify,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
    /// The lowest `highest` among live subscribers (None: none is live).
    fn slowest(&self) -> Option<u64> {
        self.highest
            .iter()
            .map(|h| h.load(Ordering::Relaxed))
            .filter(|&h| h != GONE)
            .min()
    }
}

/// `ws://IP:PORT/path` → (address, path).
fn parse_url(url: &str, proto: Proto) -> (SocketAddr, String) {
    let rest = url
        .strip_prefix("ws://")
        .unwrap_or_else(|| die(&format!("{url}: only ws:// URLs")));
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let addr = host
        .parse()
        .unwrap_or_else(|_| die(&format!("{url}: the host must be IP:PORT")));
    let path = if proto == Proto::SocketIo && path == "/" {
        "/socket.io/?EIO=4&transport=websocket".to_string()
    } else {
        path
    };
    (addr, path)
}

/// Open a connection and, for Socket.IO, join the default namespace.
async fn open(addr: SocketAddr, path: &str, proto: Proto, seed: u64) -> Result<Ws, WsError> {
    let mut ws = Ws::connect_path(addr, path, seed).await?;
    if proto == Proto::SocketIo {
        let mut buf = Vec::new();
        ws.recv_into(&mut buf).await?;
        if !buf.starts_with(b"0{") {
            return Err(WsError::Protocol("no Engine.IO open packet".into()));
        }
        ws.send(0x1, b"40").await?;
        loop {
            ws.recv_into(&mut buf).await?;
            match buf.as_slice() {
                b"2" => ws.send(0x1, b"3").await?,
                m if m.starts_with(b"40") => break,
                m => {
                    let m = String::from_utf8_lossy(&m[..m.len().min(60)]).into_owned();
                    return Err(WsError::Protocol(format!("namespace connect: {m:?}")));
                }
            }
        }
    }
    Ok(ws)
}

/// Read (and drop) what a connection was sent until it is quiet for
/// `quiet`; answers Socket.IO pings. Returns the messages read.
async fn quiesce(mut ws: Ws, proto: Proto, quiet: Duration) -> Result<(Ws, u64), WsError> {
    let mut buf = Vec::new();
    let mut n = 0;
    while let Ok(r) = tokio::time::timeout(quiet, ws.recv_into(&mut buf)).await {
        r?;
        if proto == Proto::SocketIo && buf == b"2" {
            ws.send(0x1, b"3").await?;
        } else {
            n += 1;
        }
    }
    Ok((ws, n))
}

/// Parse `fanout SEQ TS` anywhere in a message.
fn parse(msg: &[u8]) -> Option<(u64, u64)> {
    let at = msg.windows(MARKER.len()).position(|w| w == MARKER)?;
    let mut it = msg[at + MARKER.len()..].split(|&b| b == b' ' || b == b'"');
    let num = |s: Option<&[u8]>| std::str::from_utf8(s?).ok()?.parse::<u64>().ok();
    Some((num(it.next())?, num(it.next())?))
}

#[derive(Default)]
struct Tally {
    /// Receipts within the measured window, and their latencies.
    counted: u64,
    latencies_ns: Vec<u64>,
    /// Distinct messages received, and the faults.
    distinct: u64,
    duplicated: u64,
    out_of_order: u64,
    other: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn error(&mut self, e: &WsError) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| e.to_string());
    }
    fn merge(&mut self, o: Tally) {
        self.counted += o.counted;
        self.latencies_ns.extend(o.latencies_ns);
        self.distinct += o.distinct;
        self.duplicated += o.duplicated;
        self.out_of_order += o.out_of_order;
        self.other += o.other;
        self.errors += o.errors;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }
}

/// One subscriber: receive until it has the last message or the drain ends.
async fn subscriber(mut ws: Ws, idx: usize, proto: Proto, sh: Arc<Shared>) -> Tally {
    let mut t = Tally::default();
    let mut seen: Vec<u64> = Vec::new(); // a bit per sequence number
    let mut buf = Vec::new();
    let drain = sh.drain.as_nanos() as u64;
    loop {
        let last = sh.last.load(Ordering::Acquire);
        let highest = sh.highest[idx].load(Ordering::Relaxed);
        let quiet_since = sh.progress.load(Ordering::Relaxed).max(sh.end);
        if highest >= last || sh.now_ns() >= quiet_since + drain {
            break;
        }
        let r = tokio::time::timeout(Duration::from_millis(100), ws.recv_into(&mut buf)).await;
        let op = match r {
            Err(_) => continue, // look at `last` and the clock again
            Ok(Ok(op)) => {
                sh.progress.store(sh.now_ns(), Ordering::Relaxed);
                op
            }
            Ok(Err(e)) => {
                t.error(&e);
                sh.highest[idx].store(GONE, Ordering::Relaxed);
                break;
            }
        };
        let Some((seq, ts)) = (op == 0x1).then(|| parse(&buf)).flatten() else {
            if proto == Proto::SocketIo && buf == b"2" {
                if let Err(e) = ws.send(0x1, b"3").await {
                    t.error(&e);
                    sh.highest[idx].store(GONE, Ordering::Relaxed);
                    break;
                }
            } else {
                t.other += 1;
            }
            continue;
        };
        let now = sh.now_ns();
        let (word, bit) = (seq as usize / 64, 1u64 << (seq % 64));
        if seen.len() <= word {
            seen.resize(word + 1, 0);
        }
        if seen[word] & bit != 0 {
            t.duplicated += 1;
            continue;
        }
        seen[word] |= bit;
        t.distinct += 1;
        if seq < highest {
            t.out_of_order += 1;
        } else {
            sh.highest[idx].store(seq, Ordering::Relaxed);
        }
        if now >= sh.measure_from && now <= sh.end {
            t.counted += 1;
            t.latencies_ns.push(now.saturating_sub(ts));
        }
    }
    t
}

struct Published {
    count: u64,
    in_window: u64,
    window_wait: Duration,
    error: Option<String>,
}

/// The publisher: one message when due and the window allows, draining
/// what comes back to it in between.
async fn publisher(mut ws: Ws, a: PubArgs, sh: Arc<Shared>) -> Published {
    let mut p = Published {
        count: 0,
        in_window: 0,
        window_wait: Duration::ZERO,
        error: None,
    };
    let mut buf = Vec::new();
    let mut msg = Vec::with_capacity(a.size + 16);
    let start = Instant::now();
    let end = sh.base + Duration::from_nanos(sh.end);
    let mut due = start;
    let mut waiting_since: Option<Instant> = None;
    let result: Result<(), WsError> = async {
        loop {
            let now = Instant::now();
            if now >= end {
                return Ok(());
            }
            let open = sh.slowest().is_some_and(|s| p.count < s + a.window);
            if open && now >= due {
                if let Some(w) = waiting_since.take() {
                    p.window_wait += now - w;
                }
                p.count += 1;
                let ts = sh.now_ns();
                if ts >= sh.measure_from {
                    p.in_window += 1;
                }
                frame(&mut msg, a.proto, p.count, ts, a.size);
                ws.send(0x1, &msg).await?;
                if let Some(step) = a.step {
                    due += step;
                }
                continue;
            }
            if !open && waiting_since.is_none() {
                waiting_since = Some(now);
            }
            // Wake for the next due time, a message coming back, or (window
            // full) a millisecond later to look at the subscribers again.
            let wake = if open {
                due
            } else {
                now + Duration::from_millis(1)
            };
            let got = tokio::select! {
                biased;
                r = ws.recv_into(&mut buf) => Some(r?),
                _ = tokio::time::sleep_until(wake.min(end).into()) => None,
            };
            if a.proto == Proto::SocketIo && got.is_some() && buf == b"2" {
                ws.send(0x1, b"3").await?;
            }
        }
    }
    .await;
    if let Some(w) = waiting_since {
        p.window_wait += Instant::now() - w;
    }
    p.error = result.err().map(|e| e.to_string());
    sh.last.store(p.count, Ordering::Release);
    // Keep draining (and answering pings) while the subscribers drain.
    while p.error.is_none() {
        let got = tokio::select! {
            _ = sh.done.notified() => break,
            r = ws.recv_into(&mut buf) => r,
        };
        let pong = a.proto == Proto::SocketIo && buf == b"2";
        if got.is_err() || (pong && ws.send(0x1, b"3").await.is_err()) {
            break;
        }
    }
    p
}

/// The publisher's message for `seq`, in the wire format of `proto`.
fn frame(out: &mut Vec<u8>, proto: Proto, seq: u64, ts: u64, size: usize) {
    use std::io::Write;
    out.clear();
    if proto == Proto::SocketIo {
        out.extend_from_slice(b"42[\"msg\",\"");
    }
    let body = out.len();
    let _ = write!(out, "fanout {seq} {ts} ");
    while out.len() - body < size {
        out.push(b'x');
    }
    if proto == Proto::SocketIo {
        out.extend_from_slice(b"\"]");
    }
}

#[derive(Clone, Copy)]
struct PubArgs {
    proto: Proto,
    window: u64,
    size: usize,
    /// Time between messages (None: as fast as the window allows).
    step: Option<Duration>,
}

fn pid_list(s: Option<&str>) -> Vec<u32> {
    s.map(|s| {
        s.split(',')
            .filter(|p| !p.is_empty())
            .map(|p| p.parse().unwrap_or_else(|_| die(&format!("bad PID {p:?}"))))
            .collect()
    })
    .unwrap_or_default()
}

async fn run(args: &Args) {
    let proto = match args.get("proto", "plain".to_string()).as_str() {
        "plain" => Proto::Plain,
        "socketio" => Proto::SocketIo,
        other => die(&format!("--proto {other}: plain or socketio")),
    };
    let nodes: Vec<(SocketAddr, String)> = args
        .opt("nodes")
        .unwrap_or_else(|| die("--nodes ws://IP:PORT/path,... is required"))
        .split(',')
        .map(|u| parse_url(u, proto))
        .collect();
    let subs: usize = args.get("subs", 3000);
    let rate: f64 = args.get("rate", 0.0);
    let pa = PubArgs {
        proto,
        window: args.get("window", 32),
        size: args.get("size", 64),
        step: (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate)),
    };
    let secs = |k, d| Duration::from_secs_f64(args.get(k, d));
    let (duration, warmup, settle, drain) = (
        secs("duration", 5.0),
        secs("warmup", 1.0),
        secs("settle", 1.0),
        secs("drain", 5.0),
    );
    let node_pids = pid_list(args.opt("pids"));
    let redis_pid = pid_list(args.opt("redis-pid"));

    let t_open = Instant::now();
    let conns: Vec<Result<Ws, WsError>> = futures_util::stream::iter(0..subs)
        .map(|i| {
            let (addr, path) = nodes[i % nodes.len()].clone();
            async move {
                tokio::time::timeout(Duration::from_secs(20), open(addr, &path, proto, i as u64))
                    .await
                    .unwrap_or(Err(WsError::Timeout))
            }
        })
        .buffered(OPEN_CONCURRENCY)
        .collect()
        .await;
    let mut tally = Tally::default();
    let mut ready = Vec::new();
    for c in conns {
        match c {
            Ok(ws) => ready.push(ws),
            Err(e) => tally.error(&e),
        }
    }
    let open_s = t_open.elapsed().as_secs_f64();
    let quiet = secs("quiet", 0.3);
    let quieting: Vec<_> = ready
        .into_iter()
        .map(|ws| tokio::spawn(quiesce(ws, proto, quiet)))
        .collect();
    let mut ready = Vec::new();
    let mut before_run = 0u64;
    for h in quieting {
        match h.await.expect("quiesce") {
            Ok((ws, n)) => {
                before_run += n;
                ready.push(ws);
            }
            Err(e) => tally.error(&e),
        }
    }
    let publisher_ws = open(nodes[0].0, &nodes[0].1, proto, u64::MAX).await;
    tokio::time::sleep(settle).await;

    let base = Instant::now();
    let sh = Arc::new(Shared {
        base,
        highest: (0..ready.len()).map(|_| AtomicU64::new(0)).collect(),
        last: AtomicU64::new(u64::MAX),
        measure_from: warmup.as_nanos() as u64,
        end: (warmup + duration).as_nanos() as u64,
        drain,
        progress: AtomicU64::new(0),
        done: tokio::sync::Notify::new(),
    });
    let opened = ready.len();
    let subs_handles: Vec<_> = ready
        .into_iter()
        .enumerate()
        .map(|(i, ws)| tokio::spawn(subscriber(ws, i, proto, sh.clone())))
        .collect();
    let pub_task = publisher_ws.map(|ws| tokio::spawn(publisher(ws, pa, sh.clone())));
    if pub_task.is_err() {
        sh.last.store(0, Ordering::Release);
    }
    let w = base + warmup;
    tokio::time::sleep_until(w.into()).await;
    let cpu = CpuWindow::start(node_pids.iter().chain(&redis_pid).copied().collect());
    tokio::time::sleep_until((w + duration).into()).await;
    let (procs, gen_cpu) = cpu.end();
    for h in subs_handles {
        tally.merge(h.await.expect("subscriber"));
    }
    sh.done.notify_one();
    let p = match pub_task {
        Ok(task) => task.await.expect("publisher"),
        Err(e) => Published {
            count: 0,
            in_window: 0,
            window_wait: Duration::ZERO,
            error: Some(e.to_string()),
        },
    };
    if let Some(e) = &p.error {
        tally.errors += 1;
        tally
            .first_error
            .get_or_insert_with(|| format!("publisher: {e}"));
    }
    let expected = p.count * opened as u64;
    let lost = expected.saturating_sub(tally.distinct);
    let window = duration.as_secs_f64();
    let rate_out = tally.counted as f64 / window;
    let (node_cpu, redis_cpu) = procs.split_at(node_pids.len().min(procs.len()));
    let node_sum: Option<f64> = match node_cpu {
        [] => None,
        cpu => cpu.iter().copied().sum(),
    };

    let mut r = Report::new("fanout");
    r.text(
        "proto",
        Some(if proto == Proto::Plain {
            "plain"
        } else {
            "socketio"
        }),
    );
    r.num("nodes", nodes.len() as f64);
    r.num("subs", subs as f64);
    r.num("opened", opened as f64);
    r.num("open_s", open_s);
    r.num("rate_target", rate);
    r.num("window", pa.window as f64);
    r.num("size", pa.size as f64);
    r.num("window_s", window);
    r.num("published", p.count as f64);
    r.num("publish_rate", p.in_window as f64 / window);
    r.num("window_wait_s", p.window_wait.as_secs_f64());
    r.num("deliveries", tally.counted as f64);
    r.num("deliveries_per_s", rate_out);
    r.num("expected", expected as f64);
    r.num("lost", lost as f64);
    r.num("duplicated", tally.duplicated as f64);
    r.num("out_of_order", tally.out_of_order as f64);
    r.num("other", tally.other as f64);
    r.num("before_run", before_run as f64);
    r.num("errors", tally.errors as f64);
    r.list("node_cpu", node_cpu);
    r.opt("nodes_cpu", node_sum);
    r.opt("redis_cpu", redis_cpu.first().copied().flatten());
    r.num("loadgen_cpu", gen_cpu);
    r.opt(
        "node_cpu_us_per_delivery",
        node_sum.map(|c| c * 1e6 / rate_out.max(1e-9)),
    );
    let line = percentiles_line(&tally.latencies_ns);
    add_latencies(&mut r, tally.latencies_ns);
    r.text("first_error", tally.first_error.as_deref());
    eprintln!(
        "fanout {opened}/{subs} subscribers on {} nodes: {rate_out:.0} deliveries/s, {:.1} msg/s published, {line}, lost {lost}, duplicated {}, out of order {}, errors {} ({}), nodes cpu {node_sum:.2?}, loadgen cpu {gen_cpu:.2}",
        nodes.len(),
        p.in_window as f64 / window,
        tally.duplicated,
        tally.out_of_order,
        tally.errors,
        tally.first_error.as_deref().unwrap_or("-"),
    );
    r.print();
}

fn main() {
    let args = Args::parse();
    let nofile = raise_nofile();
    let subs: u64 = args.get("subs", 3000);
    if subs + 64 > nofile {
        die(&format!(
            "RLIMIT_NOFILE {nofile} is too low for {subs} subscribers"
        ));
    }
    // Bounded whatever happens: a watchdog ends the process.
    let budget = args.get::<f64>("duration", 5.0)
        + args.get::<f64>("warmup", 1.0)
        + args.get::<f64>("drain", 5.0)
        + 180.0;
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs_f64(budget));
        eprintln!("fanout: watchdog: over {budget:.0} s, exiting");
        std::process::exit(3);
    });
    let threads: usize = args.get("threads", 1);
    let rt = if threads > 1 {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    rt.expect("tokio runtime").block_on(run(&args));
}
