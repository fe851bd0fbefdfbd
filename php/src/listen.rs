//! The listening socket. php-websocket binds in the constructor, so
//! `SO_REUSEPORT` (N daemons on one port, the kernel spreading new
//! connections) has to be set there, before `bind`, on every process's
//! socket: the kernel lets a second socket share the port only when the
//! first one asked for it too.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Socket, Type};

/// Listen on `addr`; with `reuse_port` shared with other sockets that ask
/// for it (Unix only: elsewhere an error says so).
pub fn bind(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    if !reuse_port {
        return TcpListener::bind(addr);
    }
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // As std's bind does on Unix: restart at once after a stop.
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    #[cfg(not(unix))]
    return Err(io::Error::other("reuse_port needs SO_REUSEPORT (Unix)"));
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}
