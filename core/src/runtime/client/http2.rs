//! WebSockets as streams of one HTTP/2 connection (RFC 8441), the way
//! browsers open them when the server allows it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::timeout_at;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::connect::{connect_tcp, deadline_after, tls_error, Target};
use super::{ConnectOptions, WebSocket};
use crate::error::HandshakeError;
use crate::handshake::extended_connect::{ClientConnect, PROTOCOL};
use crate::handshake::{ClientOptions, Completed};
use crate::runtime::h2stream::{headers_of, H2Stream, CONNECTION_WINDOW, MAX_FRAME, STREAM_WINDOW};
use crate::runtime::{tls, RuntimeError, Stream};

/// An HTTP/2 connection to a server that allows WebSockets on it: each
/// [`open`](Self::open) is a WebSocket on a new stream. The connection
/// lasts while this value or any of its WebSockets does.
pub struct Http2Connection {
    send: h2::client::SendRequest<Bytes>,
    /// `https://host[:port]`: the scheme and authority of every stream.
    origin: String,
    addrs: (SocketAddr, SocketAddr),
}

impl std::fmt::Debug for Http2Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http2Connection")
            .field("origin", &self.origin)
            .field("peer", &self.addrs.1)
            .finish()
    }
}

/// How long the server's SETTINGS may take to arrive after the handshake.
const SETTINGS_WAIT: Duration = Duration::from_secs(2);

impl Http2Connection {
    /// Connects to the server of `url` (`wss://` only; its path is not
    /// used), agrees on `h2` by ALPN and waits for the server's
    /// `SETTINGS_ENABLE_CONNECT_PROTOCOL`. `options` give the TLS settings
    /// (their ALPN list is replaced by `h2`) and the connect timeout.
    pub async fn connect(url: &str, options: &ConnectOptions) -> Result<Self, RuntimeError> {
        let target = Target::parse(url)?;
        if !target.secure {
            return Err(RuntimeError::Url(
                url.to_owned(),
                "HTTP/2 WebSockets need wss://",
            ));
        }
        let name = ServerName::try_from(target.host.clone())
            .map_err(|_| RuntimeError::Url(url.to_owned(), "host is not a valid TLS name"))?;
        let mut tls = match &options.tls {
            Some(tls) => (**tls).clone(),
            None => (*tls::client_config(&[])?).clone(),
        };
        tls.alpn_protocols = vec![b"h2".to_vec()];
        let deadline = deadline_after(options.connect_timeout);
        let tcp = timeout_at(deadline, connect_tcp(&target.host, target.port))
            .await
            .map_err(|_| RuntimeError::Timeout("connect"))??;
        tcp.set_nodelay(options.nodelay)?;
        let addrs = (tcp.local_addr()?, tcp.peer_addr()?);
        let tls = timeout_at(
            deadline,
            TlsConnector::from(Arc::new(tls)).connect(name, tcp),
        )
        .await
        .map_err(|_| RuntimeError::Timeout("TLS handshake"))?
        .map_err(tls_error)?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(refused("the server did not agree to HTTP/2 (ALPN h2)"));
        }
        let handshake = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(MAX_FRAME)
            .handshake(tls);
        let (send, connection) = timeout_at(deadline, handshake)
            .await
            .map_err(|_| RuntimeError::Timeout("HTTP/2 handshake"))?
            .map_err(h2_error)?;
        // The connection's frames are read and written by a task of its
        // own; it ends when this value and every stream are gone.
        tokio::spawn(async move {
            // Its end (or failure) reaches the streams as their errors.
            let _ = connection.await;
        });
        let mut send = timeout_at(deadline, send.ready())
            .await
            .map_err(|_| RuntimeError::Timeout("HTTP/2 handshake"))?
            .map_err(h2_error)?;
        // The server's SETTINGS arrive after the handshake, soon.
        let settings = tokio::time::Instant::now() + SETTINGS_WAIT;
        while !send.is_extended_connect_protocol_enabled() {
            if tokio::time::Instant::now() > settings {
                return Err(refused(
                    "the server does not allow WebSockets over HTTP/2 (no SETTINGS_ENABLE_CONNECT_PROTOCOL)",
                ));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
            send = send.ready().await.map_err(h2_error)?;
        }
        Ok(Http2Connection {
            send,
            origin: format!("https://{}", target.host_header),
            addrs,
        })
    }

    /// Opens a WebSocket on a new stream for `resource` (path and query),
    /// with the options' subprotocols, origin, extra headers, engine
    /// configuration (its extensions are offered) and handshake timeout.
    pub async fn open(
        &self,
        resource: &str,
        options: &ConnectOptions,
    ) -> Result<WebSocket, RuntimeError> {
        let resource = if resource.is_empty() { "/" } else { resource };
        let mut request_options = ClientOptions::new(options.draft, &self.origin[8..], resource);
        request_options.secure = true;
        request_options.origin = options.origin.clone();
        request_options.subprotocols = options.subprotocols.clone();
        request_options.extra_headers = options.extra_headers.clone();
        let connect = ClientConnect::new(&options.config, &request_options)?;
        let mut request = http::Request::builder()
            .method(http::Method::CONNECT)
            .uri(format!("{}{resource}", self.origin))
            .extension(h2::ext::Protocol::from_static(PROTOCOL));
        for (name, value) in connect.fields() {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request.body(()).map_err(|e| {
            RuntimeError::Handshake(HandshakeError::InvalidHeader("request", e.to_string()))
        })?;
        let deadline = deadline_after(options.handshake_timeout);
        let opening = async {
            let mut send = self.send.clone().ready().await.map_err(h2_error)?;
            let (response, stream) = send.send_request(request, false).map_err(h2_error)?;
            let response = response.await.map_err(h2_error)?;
            Ok::<_, RuntimeError>((response, stream))
        };
        let (response, send) = timeout_at(deadline, opening)
            .await
            .map_err(|_| RuntimeError::Timeout("opening handshake"))??;
        let (parts, body) = response.into_parts();
        let headers = headers_of(&parts.headers);
        let session = connect.accept(&options.config, parts.status.as_u16(), &headers)?;
        let completed = Completed {
            response: Vec::new(),
            fields: Vec::new(),
            session,
            leftover: Default::default(),
        };
        let stream = Stream::H2(Box::new(H2Stream::new(send, body)));
        Ok(WebSocket::opened(
            stream,
            options.config.clone(),
            completed,
            headers,
            self.addrs,
            options.close_timeout,
        ))
    }
}

fn refused(why: &str) -> RuntimeError {
    RuntimeError::Handshake(HandshakeError::InvalidResponse(why.into()))
}

fn h2_error(e: h2::Error) -> RuntimeError {
    if e.is_io() {
        if let Some(io) = e.into_io() {
            return RuntimeError::Io(io);
        }
        return RuntimeError::Io(std::io::ErrorKind::BrokenPipe.into());
    }
    RuntimeError::Io(std::io::Error::new(std::io::ErrorKind::ConnectionReset, e))
}
