//! The runtime client against the runtime server, over real sockets: every
//! draft, plain and TLS, the traffic the issue lists (text, binary where
//! the draft has it, ping where it has it, fragmentation, a 16 MiB message,
//! a clean close).

use std::sync::Arc;

use polysocket::protocol::{CloseFrame, MessageKind};
use polysocket::runtime::{
    connect, tls, Conn, ConnectOptions, Handler, Server, ServerConfig, WebSocket,
};
use polysocket::{Draft, Event, Incoming, Message};

struct Echo;

impl Handler for Echo {
    fn on_message(&self, conn: &mut Conn<'_>, message: Incoming<'_>) {
        // Refused only once the connection is closing: nothing to answer.
        let _ = conn.forward(message);
    }
}

fn start(config: ServerConfig) -> Server {
    Server::start(
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig {
            workers: 2,
            ..config
        },
        Arc::new(Echo),
    )
    .unwrap()
}

async fn next_message(ws: &mut WebSocket) -> Message {
    loop {
        match ws.recv().await.unwrap() {
            Some(Event::Message(m)) => return m,
            Some(Event::Pong(_)) | Some(Event::Ping(_)) => {}
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

async fn exchange(ws: &mut WebSocket, draft: Draft) {
    ws.send_text("Hello ✓").await.unwrap();
    assert_eq!(next_message(ws).await, Message::text("Hello ✓"));
    let big = "x".repeat(16 << 20);
    ws.send_text(&big).await.unwrap();
    assert_eq!(next_message(ws).await, Message::text(big));
    if draft.has_binary() {
        ws.send_binary(&[0, 1, 2, 255]).await.unwrap();
        assert_eq!(next_message(ws).await, Message::binary(vec![0, 1, 2, 255]));
        ws.ping(b"are you there").await.unwrap();
        match ws.recv().await.unwrap() {
            Some(Event::Pong(p)) => assert_eq!(&p[..], b"are you there"),
            other => panic!("{draft}: expected the pong, got {other:?}"),
        }
        ws.send_fragment(MessageKind::Binary, &[1; 1000], false)
            .await
            .unwrap();
        ws.send_fragment(MessageKind::Binary, &[2; 1000], true)
            .await
            .unwrap();
        let whole = [vec![1u8; 1000], vec![2u8; 1000]].concat();
        assert_eq!(next_message(ws).await, Message::binary(whole));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_draft_through_the_runtime_client_and_server() {
    let server = start(ServerConfig::default());
    let addr = server.local_addr();
    for draft in Draft::ALL {
        let url = format!("ws://{addr}/echo?draft={draft}");
        let mut ws = connect(
            &url,
            ConnectOptions {
                draft,
                ..ConnectOptions::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(ws.draft(), draft);
        exchange(&mut ws, draft).await;
        let frame = ws.close(Some(1000), "done").await.unwrap();
        match draft.close_body() {
            polysocket::draft::CloseBody::Rfc6455 | polysocket::draft::CloseBody::Coded => {
                assert_eq!(
                    frame,
                    CloseFrame {
                        code: 1000,
                        reason: String::new()
                    },
                    "{draft}"
                )
            }
            _ => assert_eq!(frame.code, 1005, "{draft}"),
        }
    }
    tokio::task::spawn_blocking(move || server.shutdown())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_every_draft() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let server = start(ServerConfig {
        tls: Some(tls::server_config(&cert_path, &key_path).unwrap()),
        ..ServerConfig::default()
    });
    let port = server.local_addr().port();
    let client_tls = tls::client_config(&[&cert_path]).unwrap();
    for draft in Draft::ALL {
        let options = ConnectOptions {
            draft,
            tls: Some(client_tls.clone()),
            ..ConnectOptions::default()
        };
        let mut ws = connect(&format!("wss://localhost:{port}/secure"), options)
            .await
            .unwrap();
        ws.send_text("over TLS").await.unwrap();
        assert_eq!(
            next_message(&mut ws).await,
            Message::text("over TLS"),
            "{draft}"
        );
        ws.close(Some(1000), "").await.unwrap();
    }
    // An untrusted certificate is refused by the client.
    let err = connect(
        &format!("wss://localhost:{port}/"),
        ConnectOptions::default(),
    )
    .await
    .err()
    .unwrap();
    assert!(
        matches!(err, polysocket::runtime::RuntimeError::Tls(_)),
        "{err}"
    );
    tokio::task::spawn_blocking(move || server.shutdown())
        .await
        .unwrap();
}
