//! Opening handshakes for Python: the server side answers a request that
//! Tornado already parsed (every draft, hixie-76's key3 read after the
//! head); the client side builds a request and checks the answer. Both
//! hand over an [`Engine`] once the upgrade is done.

use std::sync::Arc;

use polysocket::handshake::{self, AcceptOptions, ClientOptions, Completed, Progress};
use polysocket::http::Headers;
use polysocket::{Config, Connection};
use pyo3::create_exception;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::engine::Engine;
use crate::options::{parse_draft, Options};

create_exception!(
    _native,
    HandshakeError,
    PyValueError,
    "An opening handshake failed. args: (message, status, headers): a \
     server answers with `status` and the `(name, value)` headers (e.g. \
     Sec-WebSocket-Version after a version mismatch); a client got `status` \
     (0 when the answer did not arrive or was not HTTP)."
);

type HeaderList = Vec<(String, String)>;

/// The refusal core would write, as (message, status, headers) for a
/// framework that writes its own HTTP answer.
fn refusal(error: &polysocket::HandshakeError, config: &Config) -> PyErr {
    let r = handshake::refusal(error, config);
    let headers: HeaderList = r
        .headers
        .into_iter()
        .map(|(n, v)| (n.to_owned(), v))
        .collect();
    HandshakeError::new_err((r.body, r.status, headers))
}

/// A server handshake's engine settings (both constructors take them).
fn server_config(
    max_message_size: usize,
    compression_level: Option<u32>,
    extensions: Option<Vec<String>>,
    drafts: Option<Vec<String>>,
    auto_pong: bool,
    no_context_takeover: bool,
) -> PyResult<Arc<Config>> {
    Options {
        max_message_size,
        compression_level,
        drafts,
        auto_pong,
        extensions,
        no_context_takeover,
    }
    .into_config()
}

fn engine(config: Arc<Config>, completed: Completed) -> Engine {
    Engine::new(Connection::from_completed(config, completed))
}

/// The server side of one handshake.
#[pyclass(module = "polysocket._native")]
pub struct ServerHandshake {
    config: Arc<Config>,
    /// `None` once accepted.
    hs: Option<handshake::ServerHandshake>,
}

impl ServerHandshake {
    fn hs(&self) -> PyResult<&handshake::ServerHandshake> {
        self.hs
            .as_ref()
            .ok_or_else(|| PyRuntimeError::new_err("the handshake was already accepted"))
    }

    fn request(&self) -> PyResult<&handshake::Request> {
        self.hs()?
            .request()
            .ok_or_else(|| PyRuntimeError::new_err("the request was refused"))
    }
}

#[pymethods]
impl ServerHandshake {
    /// A request whose head was parsed elsewhere: method, target, header
    /// lines in order, and any bytes already read after the head.
    #[new]
    #[pyo3(signature = (method, target, headers, body=b"".as_slice(), *, max_message_size=10*1024*1024, compression_level=None, extensions=None, drafts=None, auto_pong=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        method: &str,
        target: &str,
        headers: HeaderList,
        body: &[u8],
        max_message_size: usize,
        compression_level: Option<u32>,
        extensions: Option<Vec<String>>,
        drafts: Option<Vec<String>>,
        auto_pong: bool,
    ) -> PyResult<Self> {
        let config = server_config(
            max_message_size,
            compression_level,
            extensions,
            drafts,
            auto_pong,
            false,
        )?;
        let mut parsed = Headers::new();
        for (n, v) in headers {
            parsed.push(n, v);
        }
        let hs = handshake::ServerHandshake::from_parsed(
            Arc::clone(&config),
            method,
            target,
            parsed,
            body,
        );
        Ok(ServerHandshake {
            config,
            hs: Some(hs),
        })
    }

    /// A handshake that parses the request head itself from the bytes
    /// [`feed`](Self::feed) gives it (an ASGI server hands over the head it
    /// read, written out again). Pongs are answered in the engine unless
    /// `auto_pong` is false. With `no_context_takeover` permessage-deflate
    /// is answered with `server_no_context_takeover`: each message is
    /// compressed on its own, and `Engine.release_buffers` can give a quiet
    /// connection's compressor back.
    #[staticmethod]
    #[pyo3(signature = (*, max_message_size=10*1024*1024, compression_level=None, extensions=None, drafts=None, auto_pong=true, no_context_takeover=false))]
    fn reading(
        max_message_size: usize,
        compression_level: Option<u32>,
        extensions: Option<Vec<String>>,
        drafts: Option<Vec<String>>,
        auto_pong: bool,
        no_context_takeover: bool,
    ) -> PyResult<Self> {
        let config = server_config(
            max_message_size,
            compression_level,
            extensions,
            drafts,
            auto_pong,
            no_context_takeover,
        )?;
        let hs = handshake::ServerHandshake::new(Arc::clone(&config));
        Ok(ServerHandshake {
            config,
            hs: Some(hs),
        })
    }

    /// Feed bytes read after the head (hixie-76's 8-byte key3). True once
    /// the request can be answered; raises `HandshakeError` with the
    /// refusal (status and headers) when it cannot be.
    #[pyo3(signature = (data=b"".as_slice()))]
    fn feed(&mut self, data: &[u8]) -> PyResult<bool> {
        let hs = self
            .hs
            .as_mut()
            .ok_or_else(|| PyRuntimeError::new_err("the handshake was already accepted"))?;
        match hs.feed(data) {
            Ok(Progress::Ready) => Ok(true),
            Ok(Progress::NeedMore) => Ok(false),
            Err(e) => Err(refusal(&e, &self.config)),
        }
    }

    /// The detected draft's name (`"rfc6455"`, `"hybi-08"`, `"hixie-76"`...).
    #[getter]
    fn draft(&self) -> PyResult<&'static str> {
        Ok(self.request()?.draft().name())
    }

    /// The request's method (`GET`).
    #[getter]
    fn method(&self) -> PyResult<String> {
        Ok(self.request()?.method().to_owned())
    }

    /// The request target as sent: path and query.
    #[getter]
    fn target(&self) -> PyResult<String> {
        Ok(self.request()?.target().to_owned())
    }

    /// The header lines in order, as sent (values decoded as Latin-1).
    #[getter]
    fn headers(&self) -> PyResult<HeaderList> {
        let headers = self.request()?.headers().iter();
        Ok(headers.map(|(n, v)| (n.to_owned(), v.to_owned())).collect())
    }

    /// The subprotocols the client offered, in its order.
    #[getter]
    fn subprotocols(&self) -> PyResult<Vec<String>> {
        Ok(self
            .request()?
            .subprotocols()
            .into_iter()
            .map(str::to_owned)
            .collect())
    }

    /// The origin the client announced, from the header its draft uses
    /// (`Origin`, or `Sec-WebSocket-Origin` on hybi-04..10).
    #[getter]
    fn origin(&self) -> PyResult<Option<String>> {
        Ok(self.request()?.origin().map(str::to_owned))
    }

    /// The 101 answer (with hixie-76's MD5 body) and the connection's
    /// engine, which already holds any bytes received after the request.
    #[pyo3(signature = (subprotocol=None, extra_headers=Vec::new(), secure=false))]
    fn accept<'py>(
        &mut self,
        py: Python<'py>,
        subprotocol: Option<String>,
        extra_headers: HeaderList,
        secure: bool,
    ) -> PyResult<(Bound<'py, PyBytes>, Engine)> {
        let hs = self
            .hs
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("the handshake was already accepted"))?;
        let opts = AcceptOptions {
            subprotocol,
            extra_headers,
            secure,
        };
        let mut completed = hs.accept(&opts).map_err(|e| refusal(&e, &self.config))?;
        let response = PyBytes::new(py, &std::mem::take(&mut completed.response));
        Ok((response, engine(Arc::clone(&self.config), completed)))
    }
}

/// The client side of one handshake.
#[pyclass(module = "polysocket._native")]
pub struct ClientHandshake {
    config: Arc<Config>,
    hs: handshake::ClientHandshake,
}

impl ClientHandshake {
    /// The engine, nothing yet, or the refusal with what the answer said.
    fn finish(
        &self,
        result: Result<Option<Completed>, polysocket::HandshakeError>,
    ) -> PyResult<Option<Engine>> {
        match result {
            Ok(Some(completed)) => Ok(Some(engine(Arc::clone(&self.config), completed))),
            Ok(None) => Ok(None),
            Err(e) => {
                let status = self.hs.response_status().unwrap_or(0);
                let headers = self.response_headers().unwrap_or_default();
                Err(HandshakeError::new_err((e.to_string(), status, headers)))
            }
        }
    }
}

#[pymethods]
impl ClientHandshake {
    /// A request for `draft` to `host` (with `:port` unless default) and
    /// `resource` (path and query). `compression_level=None` offers no
    /// compression; `extensions` names the ones to offer (default: every
    /// one the draft has).
    #[new]
    #[pyo3(signature = (draft, host, resource, *, secure=false, origin=None, subprotocols=Vec::new(), extra_headers=Vec::new(), max_message_size=10*1024*1024, compression_level=None, extensions=None, auto_pong=true))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        draft: &str,
        host: String,
        resource: String,
        secure: bool,
        origin: Option<String>,
        subprotocols: Vec<String>,
        extra_headers: HeaderList,
        max_message_size: usize,
        compression_level: Option<u32>,
        extensions: Option<Vec<String>>,
        auto_pong: bool,
    ) -> PyResult<Self> {
        let config = Options {
            max_message_size,
            compression_level,
            drafts: None,
            auto_pong,
            extensions,
            no_context_takeover: false,
        }
        .into_config()?;
        let mut opts = ClientOptions::new(parse_draft(draft)?, host, resource);
        opts.secure = secure;
        opts.origin = origin;
        opts.subprotocols = subprotocols;
        opts.extra_headers = extra_headers;
        let hs = handshake::ClientHandshake::new(Arc::clone(&config), opts)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(ClientHandshake { config, hs })
    }

    /// The request to send (with hixie-76's key3 after the head).
    fn request_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.hs.request_bytes())
    }

    /// Feed the server's bytes: the engine once the answer is complete and
    /// valid (it holds any frame bytes that followed), None while more is
    /// needed; `HandshakeError` when the answer is refused or invalid.
    fn feed(&mut self, data: &[u8]) -> PyResult<Option<Engine>> {
        let result = self.hs.feed(data);
        self.finish(result)
    }

    /// Like `feed`, for an answer whose head was parsed elsewhere (Tornado's
    /// HTTP client): its status and header lines.
    fn feed_head(&mut self, status: u16, headers: HeaderList) -> PyResult<Option<Engine>> {
        let mut parsed = Headers::new();
        for (n, v) in headers {
            parsed.push(n, v);
        }
        let result = self.hs.feed_head(status, parsed);
        self.finish(result)
    }

    /// The request's `Sec-WebSocket-Key` (hybi drafts).
    #[getter]
    fn key(&self) -> Option<&str> {
        self.hs.key()
    }

    /// The request's `Sec-WebSocket-Extensions` offer, if any.
    #[getter]
    fn extension_offer(&self) -> Option<String> {
        self.hs.extension_offer()
    }

    /// The answer's status, once its head arrived.
    #[getter]
    fn response_status(&self) -> Option<u16> {
        self.hs.response_status()
    }

    /// The answer's header lines, once its head arrived.
    #[getter]
    fn response_headers(&self) -> Option<HeaderList> {
        self.hs.response_headers().map(|h| {
            h.iter()
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect()
        })
    }
}
