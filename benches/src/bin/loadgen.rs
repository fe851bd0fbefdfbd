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

use base64::Engine as _;
use futures_util::StreamExt;
use polysocket_bench::{die, raise_nofile, Args};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Handshakes in flight at once while opening many connections (stays
/// well under any listen backlog).
const OPEN_CONCURRENCY: usize = 128;

#[derive(Debug)]
enum WsError {
    Io(std::io::Error),
    Handshake(String),
    Protocol(String),
    Mismatch(String),
    Closed,
    Timeout,
}

impl std::fmt::Display for WsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WsError::Io(e) => write!(f, "i/o: {e}"),
            WsError::Handshake(s) => write!(f, "handshake: {s}"),
            WsError::Protocol(s) => write!(f, "protocol: {s}"),
            WsError::Mismatch(s) => write!(f, "echo mismatch: {s}"),
            WsError::Closed => write!(f, "closed by the server"),
            WsError::Timeout => write!(f, "timed out"),
        }
    }
}

impl From<std::io::Error> for WsError {
    fn from(e: std::io::Error) -> Self {
        WsError::Io(e)
    }
}

/// xorshift64*: masks, keys and payloads (a benchmark needs no CSPRNG).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        let mut r = Rng((t ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1);
        r.next();
        r
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// XOR `src` with the 4-byte mask into `dst` (same length), 8 bytes at a
/// time.
fn mask_into(dst: &mut [u8], src: &[u8], mask: [u8; 4]) {
    let m = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d, s) in (&mut d).zip(&mut s) {
        let v = u64::from_ne_bytes(s.try_into().unwrap()) ^ m;
        d.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, (d, s)) in d.into_remainder().iter_mut().zip(s.remainder()).enumerate() {
        *d = s ^ mask[i & 3];
    }
}

/// A client WebSocket connection.
struct Ws {
    tcp: TcpStream,
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    wbuf: Vec<u8>,
    rng: Rng,
}

impl Ws {
    /// Connect and perform the opening handshake; the answer must be 101
    /// with the right `Sec-WebSocket-Accept`.
    async fn connect(addr: SocketAddr, seed: u64) -> Result<Ws, WsError> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let mut rng = Rng::new(seed);
        let mut key_bytes = [0u8; 16];
        rng.fill(&mut key_bytes);
        let key = base64::engine::general_purpose::STANDARD.encode(key_bytes);
        let request = format!(
            "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        let mut ws = Ws {
            tcp,
            rbuf: vec![0u8; 4096],
            rstart: 0,
            rend: 0,
            wbuf: Vec::new(),
            rng,
        };
        ws.tcp.write_all(request.as_bytes()).await?;
        let head_end = loop {
            if let Some(p) = ws.rbuf[..ws.rend].windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            if ws.rend == ws.rbuf.len() {
                return Err(WsError::Handshake("response head over 4 KiB".into()));
            }
            let n = ws.tcp.read(&mut ws.rbuf[ws.rend..]).await?;
            if n == 0 {
                return Err(WsError::Handshake("EOF before the response head".into()));
            }
            ws.rend += n;
        };
        let head = std::str::from_utf8(&ws.rbuf[..head_end])
            .map_err(|_| WsError::Handshake("response head is not UTF-8".into()))?;
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap_or("");
        if !status.starts_with("HTTP/1.1 101") {
            return Err(WsError::Handshake(format!("status line {status:?}")));
        }
        let expected = {
            let mut h = Sha1::new();
            h.update(key.as_bytes());
            h.update(GUID.as_bytes());
            base64::engine::general_purpose::STANDARD.encode(h.finalize())
        };
        let (mut accept_ok, mut upgrade_ok, mut connection_ok) = (false, false, false);
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("sec-websocket-accept") {
                accept_ok = value == expected;
            } else if name.eq_ignore_ascii_case("upgrade") {
                upgrade_ok = value.eq_ignore_ascii_case("websocket");
            } else if name.eq_ignore_ascii_case("connection") {
                connection_ok = value
                    .split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
            } else if name.eq_ignore_ascii_case("sec-websocket-extensions") {
                return Err(WsError::Handshake(
                    "extension agreed though none offered".into(),
                ));
            }
        }
        if !(accept_ok && upgrade_ok && connection_ok) {
            return Err(WsError::Handshake(format!(
                "accept ok {accept_ok}, upgrade ok {upgrade_ok}, connection ok {connection_ok}"
            )));
        }
        ws.rstart = head_end;
        if ws.rstart == ws.rend {
            ws.rstart = 0;
            ws.rend = 0;
        }
        Ok(ws)
    }

    /// Encode one masked frame (FIN set) into the write buffer. The buffer
    /// keeps its length between frames of the same size, so it is not
    /// zeroed again before every message (that memset cost 9 % of the
    /// loadgen's time at 1 MiB).
    fn encode(&mut self, opcode: u8, payload: &[u8]) {
        let len = payload.len();
        let mut head = [0u8; 14];
        head[0] = 0x80 | opcode;
        let mut h = 2;
        if len < 126 {
            head[1] = 0x80 | len as u8;
        } else if len <= 0xFFFF {
            head[1] = 0x80 | 126;
            head[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            h = 4;
        } else {
            head[1] = 0x80 | 127;
            head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            h = 10;
        }
        let mask = (self.rng.next() as u32).to_ne_bytes();
        head[h..h + 4].copy_from_slice(&mask);
        h += 4;
        self.wbuf.resize(h + len, 0);
        self.wbuf[..h].copy_from_slice(&head[..h]);
        mask_into(&mut self.wbuf[h..], payload, mask);
    }

    async fn send(&mut self, opcode: u8, payload: &[u8]) -> Result<(), WsError> {
        self.encode(opcode, payload);
        self.tcp.write_all(&self.wbuf).await?;
        Ok(())
    }

    /// Make at least `need` bytes available at `rstart`.
    async fn fill(&mut self, need: usize) -> Result<(), WsError> {
        while self.rend - self.rstart < need {
            if self.rbuf.len() - self.rstart < need {
                // Compact, then grow if the frame is larger than the buffer.
                self.rbuf.copy_within(self.rstart..self.rend, 0);
                self.rend -= self.rstart;
                self.rstart = 0;
                if self.rbuf.len() < need {
                    self.rbuf.resize(need.next_power_of_two(), 0);
                }
            }
            let n = self.tcp.read(&mut self.rbuf[self.rend..]).await?;
            if n == 0 {
                return Err(WsError::Closed);
            }
            self.rend += n;
        }
        Ok(())
    }

    /// Read the next frame: (fin, opcode, payload range within rbuf).
    /// The payload stays valid until the next call.
    async fn frame(&mut self) -> Result<(bool, u8, usize, usize), WsError> {
        if self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
        }
        self.fill(2).await?;
        let b0 = self.rbuf[self.rstart];
        let b1 = self.rbuf[self.rstart + 1];
        if b0 & 0x70 != 0 {
            return Err(WsError::Protocol("RSV bits set".into()));
        }
        if b1 & 0x80 != 0 {
            return Err(WsError::Protocol("server frame is masked".into()));
        }
        let (hdr, len) = match b1 & 0x7F {
            126 => {
                self.fill(4).await?;
                let s = self.rstart;
                (
                    4,
                    u16::from_be_bytes([self.rbuf[s + 2], self.rbuf[s + 3]]) as usize,
                )
            }
            127 => {
                self.fill(10).await?;
                let s = self.rstart;
                let v = u64::from_be_bytes(self.rbuf[s + 2..s + 10].try_into().unwrap());
                (10, v as usize)
            }
            n => (2, n as usize),
        };
        self.fill(hdr + len).await?;
        let start = self.rstart + hdr;
        self.rstart = start + len;
        Ok((b0 & 0x80 != 0, b0 & 0x0F, start, start + len))
    }

    /// Read one message and check it equals `expect` (with the opcode
    /// `opcode`). Pings are answered; a close frame is an error.
    async fn expect_echo(&mut self, opcode: u8, expect: &[u8]) -> Result<(), WsError> {
        let mut offset = 0usize;
        let mut first = true;
        loop {
            let (fin, op, a, b) = self.frame().await?;
            match op {
                0x0..=0x2 => {
                    if first && op != opcode {
                        return Err(WsError::Mismatch(format!("opcode {op}, sent {opcode}")));
                    }
                    if !first && op != 0 {
                        return Err(WsError::Protocol(
                            "new message inside a fragmented one".into(),
                        ));
                    }
                    first = false;
                    let part = &self.rbuf[a..b];
                    let end = offset + part.len();
                    if end > expect.len() || part != &expect[offset..end] {
                        return Err(WsError::Mismatch(format!(
                            "bytes {offset}..{end} differ (sent {})",
                            expect.len()
                        )));
                    }
                    offset = end;
                    if fin {
                        if offset != expect.len() {
                            return Err(WsError::Mismatch(format!(
                                "echo of {offset} bytes, sent {}",
                                expect.len()
                            )));
                        }
                        return Ok(());
                    }
                }
                0x9 => {
                    let data = self.rbuf[a..b].to_vec();
                    self.send(0xA, &data).await?;
                }
                0xA => {}
                0x8 => return Err(WsError::Closed),
                other => return Err(WsError::Protocol(format!("opcode {other}"))),
            }
        }
    }

    /// Close handshake: send close 1000, read until the server's close
    /// frame, then wait for the server to close TCP.
    async fn close(mut self) -> Result<(), WsError> {
        self.send(0x8, &1000u16.to_be_bytes()).await?;
        loop {
            let (_, op, _, _) = self.frame().await?;
            if op == 0x8 {
                break;
            }
        }
        let mut scratch = [0u8; 64];
        loop {
            match self.tcp.read(&mut scratch).await {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                // A reset after the close frames is still a completed close.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// CPU seconds (user + system) a process has used, from /proc/PID/stat.
fn proc_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After "pid (comm) ", field 3 (state) is index 0: utime is field 14
    // (index 11), stime field 15 (index 12).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / hz)
}

fn self_cpu_seconds() -> f64 {
    // SAFETY: getrusage with a valid pointer to a zeroed struct.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        t(ru.ru_utime) + t(ru.ru_stime)
    }
}

/// CPU use of the server and of this process over a window.
struct CpuWindow {
    pid: Option<u32>,
    server0: Option<f64>,
    self0: f64,
    t0: Instant,
}

impl CpuWindow {
    fn start(pid: Option<u32>) -> CpuWindow {
        CpuWindow {
            pid,
            server0: pid.and_then(proc_cpu_seconds),
            self0: self_cpu_seconds(),
            t0: Instant::now(),
        }
    }
    /// (server cores busy, loadgen cores busy)
    fn end(&self) -> (Option<f64>, f64) {
        let dt = self.t0.elapsed().as_secs_f64();
        let server = match (self.pid.and_then(proc_cpu_seconds), self.server0) {
            (Some(b), Some(a)) => Some((b - a) / dt),
            _ => None,
        };
        (server, (self_cpu_seconds() - self.self0) / dt)
    }
}

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

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
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
            *b = b'a' + (ws.rng.next() % 26) as u8;
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

struct Report {
    fields: Vec<(String, String)>,
}

impl Report {
    fn new(mode: &str) -> Report {
        Report {
            fields: vec![("mode".into(), format!("\"{mode}\""))],
        }
    }
    fn num(&mut self, k: &str, v: f64) {
        let s = if v.is_finite() {
            format!("{v:.3}")
        } else {
            "null".into()
        };
        self.fields.push((k.into(), s));
    }
    fn opt(&mut self, k: &str, v: Option<f64>) {
        match v {
            Some(v) => self.num(k, v),
            None => self.fields.push((k.into(), "null".into())),
        }
    }
    fn text(&mut self, k: &str, v: Option<&str>) {
        let s = match v {
            Some(v) => format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "'")),
            None => "null".into(),
        };
        self.fields.push((k.into(), s));
    }
    fn print(&self) {
        let body: Vec<String> = self
            .fields
            .iter()
            .map(|(k, v)| format!("\"{k}\": {v}"))
            .collect();
        println!("{{{}}}", body.join(", "));
    }
}

fn add_latencies(report: &mut Report, mut lat: Vec<u64>) {
    lat.sort_unstable();
    report.num("p50_us", percentile(&lat, 0.50));
    report.num("p90_us", percentile(&lat, 0.90));
    report.num("p99_us", percentile(&lat, 0.99));
    report.num(
        "max_us",
        lat.last().map(|v| *v as f64 / 1000.0).unwrap_or(0.0),
    );
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
        let w = CpuWindow::start(pid);
        tokio::time::sleep_until(tokio::time::Instant::from_std(end)).await;
        w.end()
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

fn percentiles_line(lat: &[u64]) -> String {
    let mut v = lat.to_vec();
    v.sort_unstable();
    format!(
        "p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
        percentile(&v, 0.5),
        percentile(&v, 0.99),
        v.last().copied().unwrap_or(0) as f64 / 1000.0
    )
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
        let w = CpuWindow::start(pid);
        tokio::time::sleep_until(tokio::time::Instant::from_std(end)).await;
        w.end()
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
