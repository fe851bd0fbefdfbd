//! tokio-tungstenite echo server, written the way its own autobahn server
//! example is: `accept_async`, then `next()` / `send()` on the stream.
//!
//! echo-tungstenite [--host 127.0.0.1] [--port 9002] [--workers N]

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;

async fn handle(stream: TcpStream) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let mut ws = tokio_tungstenite::accept_async(stream).await?;
    while let Some(msg) = ws.next().await {
        let msg = msg?;
        if msg.is_text() || msg.is_binary() {
            ws.send(msg).await?;
        }
    }
    Ok(())
}

fn main() {
    polysocket_bench::serve("echo-tungstenite", 9002, |stream| async move {
        let _ = handle(stream).await;
    });
}
