//! Certificates reloaded while the server runs, and chosen by server name
//! (SNI): real TLS handshakes against certificates rcgen makes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use polysocket::runtime::tls::{self, CertificateFiles, Certificates};
use polysocket::runtime::{
    connect, Conn, ConnectOptions, Handler, RuntimeError, Server, ServerConfig, WebSocket,
};
use polysocket::{Event, Incoming, Message};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

struct Echo;

impl Handler for Echo {
    fn on_message(&self, conn: &mut Conn<'_>, message: Incoming<'_>) {
        let _ = conn.forward(message);
    }
}

/// A self-signed certificate for `names` with serial `serial`, written to
/// `<dir>/<file>.crt` and `.key`; returns its DER.
fn make(dir: &Path, file: &str, names: &[&str], serial: u64) -> Vec<u8> {
    let key = rcgen::KeyPair::generate().unwrap();
    let names = names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let mut params = rcgen::CertificateParams::new(names).unwrap();
    params.serial_number = Some(serial.into());
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join(format!("{file}.crt")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{file}.key")), key.serialize_pem()).unwrap();
    cert.der().to_vec()
}

fn files(dir: &Path, file: &str) -> CertificateFiles {
    CertificateFiles::new(
        dir.join(format!("{file}.crt")),
        dir.join(format!("{file}.key")),
    )
}

fn start(certificates: Arc<Certificates>) -> Server {
    let mut config = ServerConfig {
        workers: 2,
        ..ServerConfig::default()
    };
    config.serve_certificates(certificates).unwrap();
    Server::start("127.0.0.1:0".parse().unwrap(), config, Arc::new(Echo)).unwrap()
}

/// The leaf certificate a TLS handshake asking for `name` is served,
/// trusting the certificates in `roots`.
async fn served(port: u16, name: &str, roots: &[PathBuf]) -> Vec<u8> {
    let roots = roots.iter().map(PathBuf::as_path).collect::<Vec<_>>();
    let connector = TlsConnector::from(tls::client_config(&roots).unwrap());
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = ServerName::try_from(name.to_string()).unwrap();
    let stream = connector.connect(name, tcp).await.unwrap();
    let (_, session) = stream.get_ref();
    session.peer_certificates().unwrap()[0].to_vec()
}

async fn echo(ws: &mut WebSocket, text: &str) {
    ws.send_text(text).await.unwrap();
    loop {
        match ws.recv().await.unwrap() {
            Some(Event::Message(m)) => return assert_eq!(m, Message::text(text)),
            Some(Event::Ping(_)) | Some(Event::Pong(_)) => {}
            other => panic!("expected the echo, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_serves_new_handshakes_the_new_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let first = make(dir.path(), "site", &["localhost"], 1001);
    let first_root = dir.path().join("first.crt");
    std::fs::copy(dir.path().join("site.crt"), &first_root).unwrap();
    let server = start(Certificates::load(files(dir.path(), "site"), vec![]).unwrap());
    let handle = server.handle();
    let port = server.local_addr().port();
    assert_eq!(
        served(port, "localhost", std::slice::from_ref(&first_root)).await,
        first
    );

    // A wss connection opened before the reload.
    let options = ConnectOptions {
        tls: Some(tls::client_config(&[&first_root]).unwrap()),
        ..ConnectOptions::default()
    };
    let mut old = connect(&format!("wss://localhost:{port}/"), options)
        .await
        .unwrap();
    echo(&mut old, "before").await;

    let second = make(dir.path(), "site", &["localhost"], 2002);
    assert_ne!(first, second);
    handle.reload_tls().unwrap();
    let second_root = dir.path().join("second.crt");
    std::fs::copy(dir.path().join("site.crt"), &second_root).unwrap();
    let both = [first_root.clone(), second_root];
    assert_eq!(served(port, "localhost", &both).await, second);
    echo(&mut old, "after the reload").await;

    // A broken file: an error naming it, and the second certificate stays.
    std::fs::write(dir.path().join("site.crt"), "not a certificate").unwrap();
    let error = handle.reload_tls().unwrap_err();
    assert!(matches!(error, RuntimeError::Tls(_)), "{error}");
    assert!(error.to_string().contains("site.crt"), "{error}");
    assert_eq!(served(port, "localhost", &both).await, second);

    // A key that is not the certificate's: refused too.
    let third_root = dir.path().join("third.crt");
    make(dir.path(), "other", &["localhost"], 3003);
    std::fs::copy(dir.path().join("other.crt"), &third_root).unwrap();
    std::fs::copy(&third_root, dir.path().join("site.crt")).unwrap();
    let error = handle.reload_tls().unwrap_err().to_string();
    assert!(error.contains("site.key"), "{error}");
    assert_eq!(served(port, "localhost", &both).await, second);

    // A missing file.
    std::fs::remove_file(dir.path().join("site.key")).unwrap();
    let error = handle.reload_tls().unwrap_err().to_string();
    assert!(error.contains("site.key"), "{error}");
    assert_eq!(served(port, "localhost", &both).await, second);
    echo(&mut old, "still here").await;
    old.close(Some(1000), "").await.unwrap();
    tokio::task::spawn_blocking(move || server.shutdown())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_chooses_the_certificate_by_server_name() {
    let dir = tempfile::tempdir().unwrap();
    let default = make(
        dir.path(),
        "default",
        &["localhost", "unknown.test", "127.0.0.1"],
        1,
    );
    let a = make(dir.path(), "a", &["a.test"], 2);
    let wild = make(dir.path(), "wild", &["*.b.test"], 3);
    let mut named_a = files(dir.path(), "a");
    named_a.server_names = vec!["A.test".into()];
    let mut named_wild = files(dir.path(), "wild");
    named_wild.server_names = vec!["*.b.test".into()];
    let certificates =
        Certificates::load(files(dir.path(), "default"), vec![named_a, named_wild]).unwrap();
    let server = start(certificates);
    let port = server.local_addr().port();
    let roots = ["default", "a", "wild"].map(|f| dir.path().join(format!("{f}.crt")));
    assert_eq!(served(port, "a.test", &roots).await, a);
    assert_eq!(served(port, "x.b.test", &roots).await, wild);
    assert_eq!(served(port, "localhost", &roots).await, default);
    // An unknown name, and none at all (an IP address sends no SNI): the
    // default, which lists both.
    assert_eq!(served(port, "unknown.test", &roots).await, default);
    assert_eq!(served(port, "127.0.0.1", &roots).await, default);
    tokio::task::spawn_blocking(move || server.shutdown())
        .await
        .unwrap();
}
