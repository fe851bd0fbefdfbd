//! fastwebsockets echo server, written the way its own echo_server example
//! is: hyper's HTTP/1 server answers the upgrade, then a
//! `FragmentCollector` reads frames and writes the data frames back.
//! Auto-pong and auto-close are on (set explicitly; they are the defaults).
//!
//! echo-fastwebsockets [--host 127.0.0.1] [--port 9003] [--workers N]

use fastwebsockets::{upgrade, FragmentCollector, OpCode, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use polysocket_bench::{die, raise_nofile, server_runtime, Args};
use tokio::net::TcpListener;

async fn handle_client(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = fut.await?;
    ws.set_auto_pong(true);
    ws.set_auto_close(true);
    let mut ws = FragmentCollector::new(ws);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
    Ok(())
}

async fn server_upgrade(
    mut req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::task::spawn(async move {
        let _ = tokio::task::unconstrained(handle_client(fut)).await;
    });
    Ok(response)
}

fn main() {
    let args = Args::parse();
    let host: String = args.get("host", "127.0.0.1".to_string());
    let port: u16 = args.get("port", 9003);
    let workers: usize = args.get("workers", 0);
    raise_nofile();
    // The accept loop runs as a task on the runtime's workers, as
    // polysocket's `Server` runs its own: no extra thread does any work.
    let rt = server_runtime(workers);
    let listener = rt
        .block_on(TcpListener::bind((host.as_str(), port)))
        .unwrap_or_else(|e| {
            die(&format!(
                "echo-fastwebsockets: cannot bind {host}:{port}: {e}"
            ))
        });
    println!(
        "echo-fastwebsockets on ws://{}",
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
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = http1::Builder::new()
                    .serve_connection(io, service_fn(server_upgrade))
                    .with_upgrades()
                    .await;
            });
        }
    });
    let _ = rt.block_on(accept);
}
