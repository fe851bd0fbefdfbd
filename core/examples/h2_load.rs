//! A load generator for WebSockets over TLS, HTTP/1.1 or HTTP/2 (RFC 8441),
//! with polysocket's own client for both, so that the two transports are
//! compared with the same client code (scripts/bench-http2.sh drives it).
//!
//! ```text
//! h2_load echo --port P --cert PEM --mode h1|h2|h2mux --conns C --size S
//!              [--duration 2] [--warmup 0.5] [--streams 100] [--server-pid PID]
//! h2_load idle --port P --cert PEM --mode h1|h2|h2mux --conns N --ready-file F
//!              [--streams 100] [--hold-timeout 120]
//! ```
//!
//! Modes: `h1` is one `wss://` HTTP/1.1 connection per WebSocket, `h2` one
//! HTTP/2 connection per WebSocket (a stream each, as browser tabs to
//! different origins), `h2mux` `--streams` WebSockets per HTTP/2
//! connection ([`Http2Connection::open`]). `--cert` defaults to
//! `$H2_LOAD_CERT`; the server is `wss://localhost:P/`. No extension is
//! offered (the bytes measured are the bytes sent).
//!
//! * `echo`: each WebSocket sends one binary message of S bytes, waits for
//!   its echo and compares it, then sends the next, for the duration; the
//!   first `warmup` seconds are not counted. With `--server-pid`, the
//!   server's CPU time over the counted window is read from /proc.
//! * `idle`: open N WebSockets, each echoes one 32-byte message; write the
//!   ready file and hold them until it is removed (the script reads the
//!   server's RSS in between); then each echoes once more and closes.
//!
//! Prints one JSON object on stdout and a summary on stderr. Runs on a
//! single-threaded tokio runtime (one core).

use std::cell::Cell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use polysocket::runtime::{tls, ConnectOptions, Http2Connection, WebSocket};
use polysocket::{Config, Event, ExtensionsConfig};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    H1,
    H2,
    H2Mux,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::H1 => "h1",
            Mode::H2 => "h2",
            Mode::H2Mux => "h2mux",
        }
    }
}

struct Args {
    cmd: String,
    port: u16,
    cert: PathBuf,
    mode: Mode,
    conns: usize,
    size: usize,
    duration: f64,
    warmup: f64,
    streams: usize,
    server_pid: Option<u32>,
    ready_file: Option<PathBuf>,
    hold_timeout: f64,
}

fn die(why: &str) -> ! {
    eprintln!("h2_load: {why}");
    std::process::exit(2)
}

fn parse() -> Args {
    let mut argv = std::env::args().skip(1);
    let cmd = argv.next().unwrap_or_else(|| die("echo or idle?"));
    let mut a = Args {
        cmd,
        port: 0,
        cert: std::env::var_os("H2_LOAD_CERT")
            .map(PathBuf::from)
            .unwrap_or_default(),
        mode: Mode::H1,
        conns: 1,
        size: 32,
        duration: 2.0,
        warmup: 0.5,
        streams: 100,
        server_pid: None,
        ready_file: None,
        hold_timeout: 120.0,
    };
    while let Some(flag) = argv.next() {
        let v = argv
            .next()
            .unwrap_or_else(|| die(&format!("{flag} takes a value")));
        let num = |v: &str| -> f64 {
            v.parse()
                .unwrap_or_else(|_| die(&format!("{flag}: a number")))
        };
        match flag.as_str() {
            "--port" => a.port = num(&v) as u16,
            "--cert" => a.cert = v.into(),
            "--mode" => {
                a.mode = match v.as_str() {
                    "h1" => Mode::H1,
                    "h2" => Mode::H2,
                    "h2mux" => Mode::H2Mux,
                    _ => die("--mode: h1, h2 or h2mux"),
                }
            }
            "--conns" => a.conns = num(&v) as usize,
            "--size" => a.size = num(&v) as usize,
            "--duration" => a.duration = num(&v),
            "--warmup" => a.warmup = num(&v),
            "--streams" => a.streams = (num(&v) as usize).max(1),
            "--server-pid" => a.server_pid = Some(num(&v) as u32),
            "--ready-file" => a.ready_file = Some(v.into()),
            "--hold-timeout" => a.hold_timeout = num(&v),
            _ => die(&format!("unknown flag {flag}")),
        }
    }
    if a.port == 0 {
        die("--port is required")
    }
    if a.cert.as_os_str().is_empty() {
        die("--cert (or $H2_LOAD_CERT) is required")
    }
    a
}

fn options(args: &Args) -> ConnectOptions {
    let config = Config {
        extensions: ExtensionsConfig {
            permessage_deflate: None,
            deflate_frame: false,
            deflate_stream: false,
            ..ExtensionsConfig::default()
        },
        ..Config::default()
    };
    ConnectOptions {
        config: Arc::new(config),
        tls: Some(tls::client_config(&[&args.cert]).unwrap_or_else(|e| die(&e.to_string()))),
        http2: args.mode == Mode::H2,
        ..ConnectOptions::default()
    }
}

/// CPU seconds (user + system) of a process, from /proc/PID/stat.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // Fields 14 and 15 of the stat line; `rest` starts at field 3.
    let ticks: f64 = fields[11].parse::<f64>().ok()? + fields[12].parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}

/// Opens `n` WebSockets the way the mode says, `CONCURRENCY` handshakes at
/// a time. Returns the sockets opened (in order), the errors and the
/// number of TCP connections used.
async fn open_all(args: &Args, n: usize) -> (Vec<WebSocket>, u64, usize) {
    const CONCURRENCY: usize = 128;
    let url = format!("wss://localhost:{}/", args.port);
    let opts = Rc::new(options(args));
    let sem = Rc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut tasks = Vec::with_capacity(n);
    let mut h2conns = 0;
    match args.mode {
        Mode::H1 | Mode::H2 => {
            for _ in 0..n {
                let (url, opts, sem) = (url.clone(), opts.clone(), sem.clone());
                tasks.push(tokio::task::spawn_local(async move {
                    let _permit = sem.acquire().await.unwrap();
                    polysocket::runtime::connect(&url, (*opts).clone()).await
                }));
            }
        }
        Mode::H2Mux => {
            let mut left = n;
            while left > 0 {
                let k = left.min(args.streams);
                left -= k;
                h2conns += 1;
                let h2 = match Http2Connection::connect(&url, &opts).await {
                    Ok(h2) => Rc::new(h2),
                    Err(e) => {
                        eprintln!("h2_load: HTTP/2 connection: {e}");
                        continue;
                    }
                };
                for _ in 0..k {
                    let (h2, opts, sem) = (h2.clone(), opts.clone(), sem.clone());
                    tasks.push(tokio::task::spawn_local(async move {
                        let _permit = sem.acquire().await.unwrap();
                        h2.open("/", &opts).await
                    }));
                }
            }
        }
    }
    let mut sockets = Vec::with_capacity(n);
    let mut errors = (n - tasks.len()) as u64;
    let mut first = None;
    for t in tasks {
        match t.await.unwrap() {
            Ok(ws) => sockets.push(ws),
            Err(e) => {
                errors += 1;
                first.get_or_insert(e.to_string());
            }
        }
    }
    if let Some(e) = first {
        eprintln!("h2_load: {errors} sessions not opened, first: {e}");
    }
    let tcp = if args.mode == Mode::H2Mux {
        h2conns
    } else {
        sockets.len()
    };
    (sockets, errors, tcp)
}

/// One echo: send `payload`, read until a message arrives, compare.
async fn echo_once(ws: &mut WebSocket, payload: &[u8]) -> Result<(), String> {
    ws.send_binary(payload).await.map_err(|e| e.to_string())?;
    loop {
        match ws.recv().await {
            Ok(Some(Event::Message(m))) => {
                return if m.data() == payload {
                    Ok(())
                } else {
                    Err(format!("echo differs ({} bytes back)", m.data().len()))
                };
            }
            Ok(Some(Event::Close(_))) | Ok(None) => return Err("closed".into()),
            Ok(Some(_)) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

async fn run_echo(args: &Args) {
    let (sockets, open_errors, tcp) = open_all(args, args.conns).await;
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let end = measure_from + Duration::from_secs_f64(args.duration);
    let count = Rc::new(Cell::new(0u64));
    let errors = Rc::new(Cell::new(0u64));
    let cpu0: Rc<Cell<Option<(f64, f64, Instant)>>> = Rc::new(Cell::new(None));
    // The CPU window starts with the counted one.
    {
        let pid = args.server_pid.map(|p| p.to_string());
        let cpu0 = cpu0.clone();
        tokio::task::spawn_local(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            let server = pid.as_deref().and_then(cpu_seconds).unwrap_or(0.0);
            let me = cpu_seconds("self").unwrap_or(0.0);
            cpu0.set(Some((server, me, Instant::now())));
        });
    }
    let mut tasks = Vec::new();
    for (i, mut ws) in sockets.into_iter().enumerate() {
        let (count, errors) = (count.clone(), errors.clone());
        let payload: Vec<u8> = (0..args.size).map(|j| (j * 7 + i) as u8).collect();
        tasks.push(tokio::task::spawn_local(async move {
            while Instant::now() < end {
                match echo_once(&mut ws, &payload).await {
                    Ok(()) if Instant::now() >= measure_from && Instant::now() < end => {
                        count.set(count.get() + 1)
                    }
                    Ok(()) => {}
                    Err(e) => {
                        if errors.get() == 0 {
                            eprintln!("h2_load: {e}");
                        }
                        errors.set(errors.get() + 1);
                        return None;
                    }
                }
            }
            Some(ws)
        }));
    }
    tokio::time::sleep_until(end.into()).await;
    let server1 = args
        .server_pid
        .map(|p| p.to_string())
        .as_deref()
        .and_then(cpu_seconds);
    let me1 = cpu_seconds("self").unwrap_or(0.0);
    let (server0, me0, t0) = cpu0.get().unwrap_or((0.0, 0.0, measure_from));
    let window = Instant::now().duration_since(t0).as_secs_f64();
    let mut open = Vec::new();
    for t in tasks {
        if let Ok(Some(ws)) = t.await {
            open.push(ws);
        }
    }
    drop(open);
    let n = count.get();
    let rate = n as f64 / args.duration;
    let mb_s = rate * args.size as f64 / 1e6;
    let server_cpu = server1.map(|s| (s - server0) / window);
    let client_cpu = (me1 - me0) / window;
    let us_per_msg = |cpu: f64| {
        if n > 0 {
            cpu * args.duration * 1e6 / n as f64
        } else {
            0.0
        }
    };
    eprintln!(
        "h2_load echo {}: {} × {} B over {} TCP: {:.0} msgs/s, {:.1} MB/s, server CPU {}, client CPU {:.2}, errors {}",
        args.mode.name(),
        args.conns,
        args.size,
        tcp,
        rate,
        mb_s,
        server_cpu.map_or("?".into(), |c| format!("{c:.2}")),
        client_cpu,
        open_errors + errors.get()
    );
    println!(
        "{{\"mode\":\"{}\",\"conns\":{},\"size\":{},\"tcp\":{},\"count\":{},\"rate\":{:.1},\"mb_s\":{:.3},\
         \"server_cpu\":{},\"server_us_per_msg\":{},\"client_cpu\":{:.3},\"client_us_per_msg\":{:.3},\"errors\":{}}}",
        args.mode.name(),
        args.conns,
        args.size,
        tcp,
        n,
        rate,
        mb_s,
        server_cpu.map_or("null".into(), |c| format!("{c:.3}")),
        server_cpu.map_or("null".into(), |c| format!("{:.3}", us_per_msg(c))),
        client_cpu,
        us_per_msg(client_cpu),
        open_errors + errors.get()
    );
}

async fn echo_each(sockets: Vec<WebSocket>) -> (Vec<WebSocket>, u64) {
    let payload = Rc::new(vec![0x5a_u8; 32]);
    let mut tasks = Vec::with_capacity(sockets.len());
    for mut ws in sockets {
        let payload = payload.clone();
        tasks.push(tokio::task::spawn_local(async move {
            echo_once(&mut ws, &payload).await.map(|_| ws)
        }));
    }
    let mut kept = Vec::new();
    let mut errors = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(ws) => kept.push(ws),
            Err(e) => {
                if errors == 0 {
                    eprintln!("h2_load idle: {e}");
                }
                errors += 1
            }
        }
    }
    (kept, errors)
}

async fn run_idle(args: &Args) {
    let ready = args
        .ready_file
        .clone()
        .unwrap_or_else(|| die("idle needs --ready-file"));
    let (sockets, open_errors, tcp) = open_all(args, args.conns).await;
    let (sockets, first_errors) = echo_each(sockets).await;
    let opened = sockets.len();
    std::fs::write(&ready, format!("{opened}\n")).unwrap_or_else(|e| die(&e.to_string()));
    eprintln!(
        "h2_load idle {}: {opened} sessions on {tcp} TCP connections held",
        args.mode.name()
    );
    let until = Instant::now() + Duration::from_secs_f64(args.hold_timeout);
    while ready.exists() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (sockets, last_errors) = echo_each(sockets).await;
    let mut closes = Vec::new();
    for mut ws in sockets {
        closes.push(tokio::task::spawn_local(async move {
            // The idle measurement is taken: a close that fails changes
            // nothing it reports.
            let _ = ws.close(Some(1000), "").await;
        }));
    }
    for c in closes {
        let _ = c.await;
    }
    println!(
        "{{\"mode\":\"{}\",\"opened\":{opened},\"tcp\":{tcp},\"errors\":{}}}",
        args.mode.name(),
        open_errors + first_errors + last_errors
    );
}

fn main() {
    let args = parse();
    // Many sessions: raise the descriptor limit to its hard limit.
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        match args.cmd.as_str() {
            "echo" => run_echo(&args).await,
            "idle" => run_idle(&args).await,
            _ => die("echo or idle?"),
        }
    });
}
