//! tokio-tungstenite echo server, written the way its own autobahn server
//! example is: `accept_async`, then `next()` / `send()` on the stream.
//!
//! echo-tungstenite [--host 127.0.0.1] [--port 9002] [--workers N]

use futures_util::{SinkExt, StreamExt};
use polysocket_bench::{die, raise_nofile, server_runtime, Args};
use tokio::net::{TcpListener, TcpStream};

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
    let args = Args::parse();
    let host: String = args.get("host", "127.0.0.1".to_string());
    let port: u16 = args.get("port", 9002);
    let workers: usize = args.get("workers", 0);
    raise_nofile();
    // The accept loop runs as a task on the runtime's workers, as
    // polysocket's `Server` runs its own: no extra thread does any work.
    let rt = server_runtime(workers);
    let listener = rt
        .block_on(TcpListener::bind((host.as_str(), port)))
        .unwrap_or_else(|e| die(&format!("echo-tungstenite: cannot bind {host}:{port}: {e}")));
    println!(
        "echo-tungstenite on ws://{}",
        listener.local_addr().unwrap()
    );
    let accept = rt.spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(a) => a,
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = handle(stream).await;
            });
        }
    });
    let _ = rt.block_on(accept);
}
