//! A neutral WebSocket load generator with a small client of its own
//! (RFC 6455 handshake with the accept key checked, masked frames, every
//! echo compared byte for byte). It does not use polysocket's client, so
//! polysocket and the peers are measured with the same tool.
//!
//! ```text
//! loadgen echo  --port P --conns C --size S [--duration 3] [--warmup 0.5] [--text 1] [--server-pid PID]
//! loadgen setup --port P [--conns 32] [--duration 3] [--warmup 0.5] [--server-pid PID]
//! loadgen idle  --port P --conns N --ready-file F [--hold-timeout 120] [--server-pid PID]
//! ```
//!
//! * `echo`: C connections, each sends one message of S bytes (binary
//!   unless `--text 1`), waits for its echo and checks it, then sends the
//!   next, for the duration; the first `warmup` seconds are not counted.
//! * `setup`: C workers each open a connection, handshake, close it (close
//!   frames both ways, then the server's TCP close), again and again.
//! * `idle`: open N connections and handshake; write the ready file and
//!   hold them until it is removed (the script reads the server's RSS in
//!   between); then each connection echoes one 32-byte message, checked,
//!   and closes.
//!
//! Prints one JSON object on stdout (the script's input) and a summary on
//! stderr. Runs on a single-threaded tokio runtime (one core).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use polysocket_bench::measure::{add_latencies, percentile, percentiles_line, CpuWindow, Report};
use polysocket_bench::ws::{Ws, WsError};
use polysocket_bench::{die, raise_nofile, Args};

/// Handshakes in flight at once while opening many connections (stays
/// well under any listen backlog).
const OPEN_CONCURRENCY: usize = 128;

#[derive(Default)]
struct Tally {
    count: u64,
    latencies_ns: Vec<u64>,
    /// setup mode: close handshake durations (close sent → server's TCP close).
    close_ns: Vec<u64>,
    /// echo mode: messages counted per connection (fairness).
    per_conn: Vec<u64>,
    errors: u64,
    close_errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn error(&mut self, e: &WsError) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| e.to_string());
    }
    fn merge(&mut self, other: Tally) {
        self.count += other.count;
        self.latencies_ns.extend(other.latencies_ns);
        self.close_ns.extend(other.close_ns);
        self.per_conn.extend(other.per_conn);
        self.errors += other.errors;
        self.close_errors += other.close_errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// Open `n` connections, `OPEN_CONCURRENCY` handshakes at a time.
async fn open_many(addr: SocketAddr, n: usize) -> (Vec<Ws>, u64, Option<String>) {
    let results: Vec<Result<Ws, WsError>> = futures_util::stream::iter(0..n)
        .map(|i| async move {
            match tokio::time::timeout(Duration::from_secs(10), Ws::connect(addr, i as u64)).await {
                Ok(r) => r,
                Err(_) => Err(WsError::Timeout),
            }
        })
        .buffer_unordered(OPEN_CONCURRENCY)
        .collect()
        .await;
    let mut conns = Vec::with_capacity(n);
    let mut errors = 0;
    let mut first = None;
    for r in results {
        match r {
            Ok(ws) => conns.push(ws),
            Err(e) => {
                errors += 1;
                first.get_or_insert_with(|| e.to_string());
            }
        }
    }
    (conns, errors, first)
}

/// One connection of the echo mode.
async fn echo_worker(
    mut ws: Ws,
    size: usize,
    opcode: u8,
    measure_from: Instant,
    end: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut payload = vec![0u8; size];
    if opcode == 0x1 {
        // Printable ASCII (valid UTF-8), varied.
        for b in payload.iter_mut() {
            *b = b'a' + (ws.rng.next_u64() % 26) as u8;
        }
    } else {
        ws.rng.fill(&mut payload);
    }
    let mut seq: u64 = 0;
    let hard_stop = tokio::time::Instant::from_std(end + Duration::from_secs(15));
    let run = async {
        loop {
            let t0 = Instant::now();
            if t0 >= end {
                return Ok::<Ws, WsError>(ws);
            }
            // A sequence number in the first bytes: a stale or repeated
            // echo cannot pass for this one.
            seq += 1;
            let tag = if opcode == 0x1 {
                format!("{seq:08x}").into_bytes()
            } else {
                seq.to_le_bytes().to_vec()
            };
            let k = tag.len().min(size);
            payload[..k].copy_from_slice(&tag[tag.len() - k..]);
            ws.send(opcode, &payload).await?;
            ws.expect_echo(opcode, &payload).await?;
            let t1 = Instant::now();
            if t1 >= measure_from && t1 <= end {
                tally.count += 1;
                tally.latencies_ns.push((t1 - t0).as_nanos() as u64);
            }
        }
    };
    let outcome = tokio::time::timeout_at(hard_stop, run).await;
    tally.per_conn.push(tally.count);
    match outcome {
        Ok(Ok(ws)) => {
            let close = tokio::time::timeout(Duration::from_secs(5), ws.close()).await;
            if !matches!(close, Ok(Ok(()))) {
                tally.close_errors += 1;
            }
        }
        Ok(Err(e)) => tally.error(&e),
        Err(_) => tally.error(&WsError::Timeout),
    }
    tally
}

/// One worker of the setup mode: open, handshake, close, again.
async fn setup_worker(addr: SocketAddr, seed: u64, measure_from: Instant, end: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut i = 0u64;
    while Instant::now() < end {
        i += 1;
        let t0 = Instant::now();
        let cycle = async {
            let ws = Ws::connect(addr, seed.wrapping_mul(1_000_003).wrapping_add(i)).await?;
            let t1 = Instant::now();
            ws.close().await?;
            Ok::<Instant, WsError>(t1)
        };
        match tokio::time::timeout(Duration::from_secs(10), cycle).await {
            Ok(Ok(t1)) => {
                let t2 = Instant::now();
                if t2 >= measure_from && t2 <= end {
                    tally.count += 1;
                    // Latency reported: connect + handshake; the close
                    // handshake apart.
                    tally.latencies_ns.push((t1 - t0).as_nanos() as u64);
                    tally.close_ns.push((t2 - t1).as_nanos() as u64);
                }
            }
            Ok(Err(e)) => tally.error(&e),
            Err(_) => tally.error(&WsError::Timeout),
        }
        if tally.errors > 100 {
            break;
        }
    }
    tally
}

async fn run_echo(args: &Args, addr: SocketAddr, pid: Option<u32>) {
    let conns: usize = args.get("conns", 1);
    let size: usize = args.get("size", 32);
    let duration: f64 = args.get("duration", 3.0);
    let warmup: f64 = args.get("warmup", 0.5);
    let opcode = if args.get::<u8>("text", 0) != 0 {
        0x1
    } else {
        0x2
    };
    let (ws, open_errors, open_first) = open_many(addr, conns).await;
    let opened = ws.len();
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(warmup);
    let end = measure_from + Duration::from_secs_f64(duration);
    let cpu = tokio::spawn(async move {
        tokio::time::sleep_until(tokio::time::Instant::from_std(measure_from)).await;
        let w = CpuWindow::start(pid.into_iter().collect());
        tokio::time::sleep_until(tokio::time::Instant::from_std(end)).await;
        let (server, client) = w.end();
        (server.into_iter().next().flatten(), client)
    });
    let handles: Vec<_> = ws
        .into_iter()
        .map(|w| tokio::spawn(echo_worker(w, size, opcode, measure_from, end)))
        .collect();
    let (server_cpu, client_cpu) = cpu.await.expect("cpu task");
    let mut tally = Tally::default();
    for h in handles {
        tally.merge(h.await.expect("worker"));
    }
    tally.errors += open_errors;
    if tally.first_error.is_none() {
        tally.first_error = open_first;
    }
    let window = end.duration_since(measure_from).as_secs_f64();
    let rate = tally.count as f64 / window;
    let mut r = Report::new("echo");
    r.num("conns", conns as f64);
    r.num("opened", opened as f64);
    r.num("size", size as f64);
    r.text("opcode", Some(if opcode == 1 { "text" } else { "binary" }));
    r.num("window_s", window);
    r.num("verified", tally.count as f64);
    r.num("msgs_per_s", rate);
    r.num("mb_per_s", rate * size as f64 / 1e6);
    r.num("errors", tally.errors as f64);
    r.num("close_errors", tally.close_errors as f64);
    r.opt("server_cpu", server_cpu);
    r.num("loadgen_cpu", client_cpu);
    r.opt(
        "server_cpu_us_per_msg",
        server_cpu.map(|c| c * 1e6 / rate.max(1e-9)),
    );
    let p = percentiles_line(&tally.latencies_ns);
    add_latencies(&mut r, tally.latencies_ns);
    // Fairness: messages per connection over the window.
    let mut per = tally.per_conn;
    per.sort_unstable();
    let (cmin, cmed, cmax) = match per.len() {
        0 => (0, 0, 0),
        n => (per[0], per[n / 2], per[n - 1]),
    };
    r.num("conn_msgs_min", cmin as f64);
    r.num("conn_msgs_median", cmed as f64);
    r.num("conn_msgs_max", cmax as f64);
    r.text("first_error", tally.first_error.as_deref());
    eprintln!(
        "echo {conns} x {size} B: {rate:.0} msg/s, {:.1} MB/s, {p}, per connection min/median/max {cmin}/{cmed}/{cmax}, errors {}, close errors {}, server cpu {:?}, loadgen cpu {client_cpu:.2}",
        rate * size as f64 / 1e6,
        tally.errors,
        tally.close_errors,
        server_cpu.map(|c| (c * 100.0).round() / 100.0)
    );
    r.print();
}

async fn run_setup(args: &Args, addr: SocketAddr, pid: Option<u32>) {
    let conns: usize = args.get("conns", 32);
    let duration: f64 = args.get("duration", 3.0);
    let warmup: f64 = args.get("warmup", 0.5);
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(warmup);
    let end = measure_from + Duration::from_secs_f64(duration);
    let cpu = tokio::spawn(async move {
        tokio::time::sleep_until(tokio::time::Instant::from_std(measure_from)).await;
        let w = CpuWindow::start(pid.into_iter().collect());
        tokio::time::sleep_until(tokio::time::Instant::from_std(end)).await;
        let (server, client) = w.end();
        (server.into_iter().next().flatten(), client)
    });
    let handles: Vec<_> = (0..conns)
        .map(|i| tokio::spawn(setup_worker(addr, i as u64, measure_from, end)))
        .collect();
    let (server_cpu, client_cpu) = cpu.await.expect("cpu task");
    let mut tally = Tally::default();
    for h in handles {
        tally.merge(h.await.expect("worker"));
    }
    let window = end.duration_since(measure_from).as_secs_f64();
    let rate = tally.count as f64 / window;
    let mut r = Report::new("setup");
    r.num("conns", conns as f64);
    r.num("window_s", window);
    r.num("verified", tally.count as f64);
    r.num("setups_per_s", rate);
    r.num("errors", tally.errors as f64);
    r.opt("server_cpu", server_cpu);
    r.num("loadgen_cpu", client_cpu);
    r.opt(
        "server_cpu_us_per_setup",
        server_cpu.map(|c| c * 1e6 / rate.max(1e-9)),
    );
    let p = percentiles_line(&tally.latencies_ns);
    let pc = percentiles_line(&tally.close_ns);
    add_latencies(&mut r, tally.latencies_ns);
    let mut close = tally.close_ns;
    close.sort_unstable();
    r.num("close_p50_us", percentile(&close, 0.5));
    r.num("close_p99_us", percentile(&close, 0.99));
    r.text("first_error", tally.first_error.as_deref());
    eprintln!(
        "setup x {conns}: {rate:.0} connections/s (open + handshake + close), handshake {p}, close {pc}, errors {}, server cpu {:?}, loadgen cpu {client_cpu:.2}",
        tally.errors,
        server_cpu.map(|c| (c * 100.0).round() / 100.0)
    );
    r.print();
}

/// Every connection echoes one 32 B message (all at once, each within 20 s),
/// then closes if `close`; returns the connections still open and the tally.
async fn echo_each(conns: Vec<Ws>, close: bool) -> (Vec<Ws>, Tally) {
    let handles: Vec<_> = conns
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let mut payload = [0u8; 32];
                ws.rng.fill(&mut payload);
                let echo = async {
                    ws.send(0x2, &payload).await?;
                    ws.expect_echo(0x2, &payload).await
                };
                match tokio::time::timeout(Duration::from_secs(20), echo).await {
                    Ok(Ok(())) if close => (
                        tokio::time::timeout(Duration::from_secs(20), ws.close()).await,
                        None,
                    ),
                    Ok(Ok(())) => (Ok(Ok(())), Some(ws)),
                    failed => (failed, None),
                }
            })
        })
        .collect();
    let mut tally = Tally::default();
    let mut open = Vec::new();
    for h in handles {
        let (result, ws) = h.await.expect("worker");
        match result {
            Ok(Ok(())) => {
                tally.count += 1;
                open.extend(ws);
            }
            Ok(Err(e)) => tally.error(&e),
            Err(_) => tally.error(&WsError::Timeout),
        }
    }
    (open, tally)
}

async fn run_idle(args: &Args, addr: SocketAddr) {
    let conns: usize = args.get("conns", 10_000);
    let hold_timeout: f64 = args.get("hold-timeout", 120.0);
    let ready: PathBuf = args
        .opt("ready-file")
        .unwrap_or_else(|| die("idle needs --ready-file"))
        .into();
    let t0 = Instant::now();
    let (conns_open, open_errors, open_first) = open_many(addr, conns).await;
    let open_s = t0.elapsed().as_secs_f64();
    let opened = conns_open.len();
    eprintln!("idle: {opened} connections open in {open_s:.2} s ({open_errors} failed)");
    // Connections that talked before going quiet, as in a real server:
    // whatever a server keeps per connection after a message counts.
    let (conns_open, talked) = if args.get::<u8>("talk-first", 0) != 0 {
        let (open, tally) = echo_each(conns_open, false).await;
        eprintln!(
            "idle: {} echoed one message first, errors {}",
            tally.count, tally.errors
        );
        (open, Some(tally))
    } else {
        (conns_open, None)
    };
    std::fs::write(&ready, format!("{opened}\n")).expect("write the ready file");
    // Hold until the script removes the ready file (bounded).
    let deadline = Instant::now() + Duration::from_secs_f64(hold_timeout);
    let mut held_out = false;
    while ready.exists() {
        if Instant::now() >= deadline {
            held_out = true;
            let _ = std::fs::remove_file(&ready);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every idle connection must still echo.
    let (_, mut tally) = echo_each(conns_open, true).await;
    if let Some(talked) = talked {
        tally.errors += talked.errors;
        tally.first_error = tally.first_error.or(talked.first_error);
    }
    let mut r = Report::new("idle");
    r.num("conns", conns as f64);
    r.num("opened", opened as f64);
    r.num("open_errors", open_errors as f64);
    r.num("open_s", open_s);
    r.num("verified", tally.count as f64);
    r.num("errors", tally.errors as f64 + open_errors as f64);
    r.num("held_out", if held_out { 1.0 } else { 0.0 });
    r.text(
        "first_error",
        open_first.as_deref().or(tally.first_error.as_deref()),
    );
    eprintln!(
        "idle: {} of {opened} echoed after the hold and closed cleanly, errors {}",
        tally.count, tally.errors
    );
    r.print();
}

fn main() {
    let args = Args::parse();
    let mode = args
        .positional
        .first()
        .cloned()
        .unwrap_or_else(|| die("usage: loadgen echo|setup|idle --port P [...]"));
    let host: String = args.get("host", "127.0.0.1".to_string());
    let port: u16 = args.get("port", 9001);
    let pid: Option<u32> = args
        .opt("server-pid")
        .map(|p| p.parse().expect("--server-pid"));
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .unwrap_or_else(|_| die("--host must be an IP address"));
    let nofile = raise_nofile();
    let conns: usize = args.get("conns", 1);
    if mode != "setup" && conns as u64 + 64 > nofile {
        die(&format!(
            "RLIMIT_NOFILE {nofile} is too low for {conns} connections"
        ));
    }
    // Bounded whatever happens: a watchdog ends the process.
    let budget = args.get::<f64>("duration", 3.0)
        + args.get::<f64>("warmup", 0.5)
        + args.get::<f64>("hold-timeout", 120.0)
        + 120.0;
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs_f64(budget));
        eprintln!("loadgen: watchdog: over {budget:.0} s, exiting");
        std::process::exit(3);
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        match mode.as_str() {
            "echo" => run_echo(&args, addr, pid).await,
            "setup" => run_setup(&args, addr, pid).await,
            "idle" => run_idle(&args, addr).await,
            other => die(&format!("unknown mode {other}")),
        }
    });
}
