//! `sse_tower::serve` over TLS (feature `tls`): HTTP/2 and HTTP/1.1 by
//! ALPN, a certificate reloaded while serving, the handshake bounded, and
//! a full server answering `503` over TLS. The client is rustls trusting
//! the test certificates in `tests/tls/` (self-signed, `localhost` and
//! `127.0.0.1`, made with `openssl req -x509`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sse_tower::serve::{Tls, TlsError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::ring};

mod serving;

use serving::{SECOND, Server, closed_within, start};

const FIRST_CERT: &[u8] = include_bytes!("tls/first.cert.pem");
const FIRST_KEY: &[u8] = include_bytes!("tls/first.key.pem");
const SECOND_CERT: &[u8] = include_bytes!("tls/second.cert.pem");
const SECOND_KEY: &[u8] = include_bytes!("tls/second.key.pem");

/// A TLS client that trusts both test certificates and offers `alpn`.
fn connector(alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for pem in [FIRST_CERT, SECOND_CERT] {
        roots
            .add(CertificateDer::from_pem_slice(pem).unwrap())
            .unwrap();
    }
    let mut config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

async fn connect(addr: &str, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let socket = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    connector(alpn).connect(name, socket).await.unwrap()
}

/// The certificate the server presented.
fn presented(stream: &TlsStream<TcpStream>) -> Vec<u8> {
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn der(pem: &[u8]) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem).unwrap().to_vec()
}

async fn start_tls(tls: Tls) -> Server {
    start(|s| s.tls(tls)).await
}

async fn tell_alice(server: &Server, text: &str) {
    server
        .sse
        .notifier()
        .broadcast(
            &sse_core::Audience::user("alice"),
            &sse_core::Event::json(&text).unwrap(),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_get_http2_and_every_stream_shares_one_connection() {
    let server = start_tls(Tls::from_pem(FIRST_CERT, FIRST_KEY).unwrap()).await;
    let stream = connect(&server.addr, &[b"h2", b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let mut bodies = Vec::new();
    for _ in 0..10 {
        let request = http::Request::get("https://localhost/events")
            .header("accept", "text/event-stream")
            .header("cookie", "sid=alice")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), http::Version::HTTP_2);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        bodies.push(response.into_body());
    }
    while server.hub.subscriptions() < 10 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tell_alice(&server, "over h2").await;
    for mut body in bodies {
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains("over h2") {
            let frame = tokio::time::timeout(SECOND, body.frame())
                .await
                .expect("the event within 1 s")
                .expect("the stream is open")
                .unwrap();
            if let Some(data) = frame.data_ref() {
                seen.extend_from_slice(data);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_offering_only_http1_gets_an_http1_event_stream() {
    for alpn in [&[b"http/1.1".as_slice()][..], &[]] {
        let server = start_tls(Tls::from_pem(FIRST_CERT, FIRST_KEY).unwrap()).await;
        let mut stream = connect(&server.addr, alpn).await;
        stream
            .write_all(
                b"GET /events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\nCookie: sid=alice\r\n\r\n",
            )
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
            let n = tokio::time::timeout(SECOND, stream.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8_lossy(&got).to_string();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{alpn:?}: {head}");
        assert!(head.contains("content-type: text/event-stream"), "{head}");
        while server.hub.subscriptions() < 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tell_alice(&server, "over http/1.1").await;
        while !String::from_utf8_lossy(&got).contains("over http/1.1") {
            let n = tokio::time::timeout(SECOND, stream.read(&mut buf))
                .await
                .expect("the event within 1 s")
                .unwrap();
            assert!(n > 0, "closed before the event");
            got.extend_from_slice(&buf[..n]);
        }
        // HTTP/2 prior knowledge is not sniffed over TLS.
        let mut stream = connect(&server.addr, alpn).await;
        stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(2 * SECOND, stream.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "still open after the preface");
        // hyper's HTTP/1 parser refuses `PRI`; an HTTP/2 session would
        // answer with a SETTINGS frame, whose header starts with NUL bytes.
        assert!(
            !answer.contains(&0),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_certificate_is_presented_to_new_connections_and_a_bad_one_is_refused() {
    let dir = std::env::temp_dir().join(format!("sse-tower-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, FIRST_CERT).unwrap();
    std::fs::write(&key, FIRST_KEY).unwrap();
    let tls = Tls::from_pem_files(&cert, &key).unwrap();
    let server = start_tls(tls.clone()).await;
    let before = connect(&server.addr, &[b"h2"]).await;
    assert_eq!(presented(&before), der(FIRST_CERT));

    std::fs::write(&cert, SECOND_CERT).unwrap();
    std::fs::write(&key, SECOND_KEY).unwrap();
    tls.reload().unwrap();
    let after = connect(&server.addr, &[b"h2"]).await;
    assert_eq!(presented(&after), der(SECOND_CERT));

    // A half-written renewal: the first certificate with the second key.
    std::fs::write(&cert, FIRST_CERT).unwrap();
    let refused = tls.reload();
    assert!(matches!(refused, Err(TlsError::Refused(_))), "{refused:?}");
    std::fs::write(&key, b"garbage").unwrap();
    let refused = tls.reload();
    assert!(
        matches!(refused, Err(TlsError::NoKey { .. })),
        "{refused:?}"
    );
    std::fs::remove_file(&key).unwrap();
    let refused = tls.reload().unwrap_err();
    assert!(refused.to_string().contains("key.pem"), "{refused}");
    // The pair in use stays.
    let still = connect(&server.addr, &[b"h2"]).await;
    assert_eq!(presented(&still), der(SECOND_CERT));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_handshake_is_closed_at_the_head_timeout() {
    let tls = Tls::from_pem(FIRST_CERT, FIRST_KEY).unwrap();
    let server = start(|s| s.tls(tls).header_read_timeout(Duration::from_millis(500))).await;
    let mut silent = TcpStream::connect(&server.addr).await.unwrap();
    let closed = closed_within(&mut silent, 5 * SECOND).await.unwrap();
    assert!(closed >= Duration::from_millis(400), "{closed:?}");
    // Half a ClientHello, then nothing.
    let mut slow = TcpStream::connect(&server.addr).await.unwrap();
    slow.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    let started = Instant::now();
    closed_within(&mut slow, 5 * SECOND).await.unwrap();
    assert!(started.elapsed() < 2 * SECOND);
    // Plain HTTP on the TLS port is not served.
    let mut plain = TcpStream::connect(&server.addr).await.unwrap();
    plain
        .write_all(b"GET /events HTTP/1.1\r\nHost: localhost\r\nCookie: sid=alice\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(2 * SECOND, plain.read_to_end(&mut answer)).await;
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_cap_a_tls_client_reads_its_503() {
    let tls = Tls::from_pem(FIRST_CERT, FIRST_KEY).unwrap();
    let server = start(|s| s.tls(tls).max_connections(1).busy_connections(4)).await;
    let held = connect(&server.addr, &[b"h2", b"http/1.1"]).await;
    // The held connection owns the only slot once its handshake is done.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut turned_away = connect(&server.addr, &[b"h2", b"http/1.1"]).await;
    assert_eq!(
        turned_away.get_ref().1.alpn_protocol(),
        Some(&b"http/1.1"[..]),
        "a 503 is written in HTTP/1.1, so only that is offered"
    );
    turned_away
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(2 * SECOND, turned_away.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    drop(held);
}
