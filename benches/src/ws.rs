//! The benchmarks' own WebSocket client (RFC 6455, no extensions): the
//! handshake with the accept key checked, masked frames, a read buffer
//! that frames are parsed in place from. Not polysocket's client, so
//! polysocket and its peers are measured with the same tool.

use std::net::SocketAddr;

use base64::Engine as _;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

#[derive(Debug)]
pub enum WsError {
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
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        let mut r = Rng((t ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1);
        r.next_u64();
        r
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
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
pub struct Ws {
    tcp: TcpStream,
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    wbuf: Vec<u8>,
    pub rng: Rng,
    /// Pong bytes still to write (see `recv_into`).
    owed: Vec<u8>,
}

impl Ws {
    /// Connect and perform the opening handshake; the answer must be 101
    /// with the right `Sec-WebSocket-Accept`.
    pub async fn connect(addr: SocketAddr, seed: u64) -> Result<Ws, WsError> {
        Ws::connect_path(addr, "/", seed).await
    }

    /// [`Ws::connect`] with a request target other than `/`.
    pub async fn connect_path(addr: SocketAddr, path: &str, seed: u64) -> Result<Ws, WsError> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let mut rng = Rng::new(seed);
        let mut key_bytes = [0u8; 16];
        rng.fill(&mut key_bytes);
        let key = base64::engine::general_purpose::STANDARD.encode(key_bytes);
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        let mut ws = Ws {
            tcp,
            rbuf: vec![0u8; 4096],
            rstart: 0,
            rend: 0,
            wbuf: Vec::new(),
            rng,
            owed: Vec::new(),
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
    pub fn encode(&mut self, opcode: u8, payload: &[u8]) {
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
        let mask = (self.rng.next_u64() as u32).to_ne_bytes();
        head[h..h + 4].copy_from_slice(&mask);
        h += 4;
        self.wbuf.resize(h + len, 0);
        self.wbuf[..h].copy_from_slice(&head[..h]);
        mask_into(&mut self.wbuf[h..], payload, mask);
    }

    pub async fn send(&mut self, opcode: u8, payload: &[u8]) -> Result<(), WsError> {
        if !self.owed.is_empty() {
            self.pay_owed().await?;
        }
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
    pub async fn frame(&mut self) -> Result<(bool, u8, usize, usize), WsError> {
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
    pub async fn expect_echo(&mut self, opcode: u8, expect: &[u8]) -> Result<(), WsError> {
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

    /// Read the next data message into `out` (fragments joined) and return
    /// its opcode. Pings are answered, pongs skipped; a close frame is
    /// [`WsError::Closed`]. Cancel-safe for unfragmented messages (a
    /// publisher selects between it and its clock): frames are consumed
    /// only once whole, and a pong cut short is finished by the next write.
    pub async fn recv_into(&mut self, out: &mut Vec<u8>) -> Result<u8, WsError> {
        out.clear();
        let mut opcode = None;
        loop {
            let (fin, op, a, b) = self.frame().await?;
            match (op, opcode) {
                (0x1 | 0x2, None) | (0x0, Some(_)) => {
                    opcode.get_or_insert(op);
                    out.extend_from_slice(&self.rbuf[a..b]);
                    if fin {
                        return Ok(opcode.unwrap_or(op));
                    }
                }
                (0x0..=0x2, _) => {
                    return Err(WsError::Protocol(format!(
                        "opcode {op} where {} was expected",
                        if opcode.is_some() {
                            "a continuation"
                        } else {
                            "a new message"
                        }
                    )))
                }
                (0x9, _) => {
                    let data = self.rbuf[a..b].to_vec();
                    self.encode(0xA, &data);
                    self.owed.extend_from_slice(&self.wbuf);
                    self.pay_owed().await?;
                }
                (0xA, _) => {}
                (0x8, _) => return Err(WsError::Closed),
                (other, _) => return Err(WsError::Protocol(format!("opcode {other}"))),
            }
        }
    }

    /// Write the owed pong bytes, dropping each chunk once written.
    async fn pay_owed(&mut self) -> Result<(), WsError> {
        while !self.owed.is_empty() {
            let n = self.tcp.write(&self.owed).await?;
            if n == 0 {
                return Err(WsError::Io(std::io::ErrorKind::WriteZero.into()));
            }
            self.owed.drain(..n);
        }
        Ok(())
    }

    /// Close handshake: send close 1000, read until the server's close
    /// frame, then wait for the server to close TCP.
    pub async fn close(mut self) -> Result<(), WsError> {
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
