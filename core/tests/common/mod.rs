//! What several test files share: a blocking WebSocket client driving the
//! engine's client role over std::net.
#![allow(dead_code)] // each test file uses part of it

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use polysocket::handshake::{ClientHandshake, ClientOptions};
use polysocket::protocol::CloseFrame;
use polysocket::{Config, Connection, Draft, Event, Message};

/// A blocking client driving the engine over std::net.
pub struct Client {
    pub stream: TcpStream,
    pub conn: Connection,
}

impl Client {
    pub fn connect(addr: SocketAddr, draft: Draft) -> Client {
        Client::try_connect(addr, draft, None).expect("handshake")
    }

    pub fn try_connect(
        addr: SocketAddr,
        draft: Draft,
        origin: Option<&str>,
    ) -> Result<Client, String> {
        Client::try_connect_with(addr, draft, origin, Config::default())
    }

    /// A client that offers no compression extension.
    pub fn connect_uncompressed(addr: SocketAddr, draft: Draft) -> Client {
        let mut config = Config::default();
        config.extensions.permessage_deflate = None;
        config.extensions.deflate_frame = false;
        config.extensions.deflate_stream = false;
        Client::try_connect_with(addr, draft, None, config).expect("handshake")
    }

    pub fn try_connect_with(
        addr: SocketAddr,
        draft: Draft,
        origin: Option<&str>,
        config: Config,
    ) -> Result<Client, String> {
        let config = Arc::new(config);
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut opts = ClientOptions::new(draft, addr.to_string(), "/chat?room=1");
        opts.origin = origin.map(str::to_string);
        let mut hs = ClientHandshake::new(config.clone(), opts).unwrap();
        stream.write_all(hs.request_bytes()).unwrap();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed during handshake".into());
            }
            match hs.feed(&buf[..n]) {
                Ok(Some(done)) => {
                    let conn = Connection::from_completed(config, done);
                    return Ok(Client { stream, conn });
                }
                Ok(None) => {}
                Err(e) => return Err(format!("{} {e}", hs.response_status().unwrap_or(0))),
            }
        }
    }

    pub fn flush(&mut self) {
        let out = self.conn.take_output();
        self.stream.write_all(&out).unwrap();
    }

    pub fn send(&mut self, text: &str) {
        self.conn.send_text(text).unwrap();
        self.flush();
    }

    /// The next event, or None when the server closed TCP.
    pub fn recv(&mut self) -> Option<Event> {
        let mut buf = [0u8; 65536];
        loop {
            match self.conn.poll() {
                Ok(Some(e)) => {
                    self.flush();
                    return Some(e);
                }
                Ok(None) => {}
                Err(e) => panic!("client saw a protocol error: {e}"),
            }
            let n = self.stream.read(&mut buf).expect("read");
            if n == 0 {
                return self.conn.receive_eof();
            }
            self.conn.receive(&buf[..n]);
        }
    }

    pub fn recv_message(&mut self) -> Message {
        match self.recv() {
            Some(Event::Message(m)) => m,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    pub fn expect_close(&mut self) -> CloseFrame {
        loop {
            match self.recv() {
                Some(Event::Close(f)) => return f,
                Some(_) => {}
                None => panic!("connection ended without a close"),
            }
        }
    }
}
