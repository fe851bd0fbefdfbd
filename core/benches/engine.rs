//! Hot paths of the engine: masking, UTF-8 validation, frame decode and
//! encode, handshakes. `cargo bench -p polysocket --bench engine`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use polysocket::framing::apply_mask;
use polysocket::{Config, Connection, Draft, Role, Session};

fn masking(c: &mut Criterion) {
    let mut g = c.benchmark_group("mask");
    for size in [64usize, 4096, 1 << 20] {
        let mut buf = vec![0x5au8; size];
        let src = vec![0xa5u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("apply_mask", size), &size, |b, _| {
            b.iter(|| apply_mask(black_box(&mut buf), [1, 2, 3, 4], 0))
        });
        g.bench_with_input(BenchmarkId::new("memcpy", size), &size, |b, _| {
            b.iter(|| black_box(&mut buf).copy_from_slice(black_box(&src)))
        });
    }
    g.finish();
}

fn utf8(c: &mut Criterion) {
    let mut g = c.benchmark_group("utf8");
    let text = "Hello-µ@ßöäüàá-UTF-8!! κόσμε ✓ plain ascii text follows. ".repeat(20000);
    let data = &text.as_bytes()[..1 << 20];
    let data = &data[..std::str::from_utf8(data).map_or_else(|e| e.valid_up_to(), |s| s.len())];
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("polysocket_validate_1MiB", |b| {
        b.iter(|| polysocket::utf8::validate(black_box(data)))
    });
    g.bench_function("polysocket_streaming_1MiB_in_4KiB", |b| {
        b.iter(|| {
            let mut v = polysocket::utf8::Utf8Validator::new();
            for chunk in black_box(data).chunks(4096) {
                v.feed(chunk).unwrap();
            }
            v.finish()
        })
    });
    g.bench_function("simdutf8_basic_1MiB", |b| {
        b.iter(|| simdutf8::basic::from_utf8(black_box(data)).is_ok())
    });
    g.bench_function("std_from_utf8_1MiB", |b| {
        b.iter(|| std::str::from_utf8(black_box(data)).is_ok())
    });
    g.finish();
}

fn frames(c: &mut Criterion) {
    let config = Arc::new(Config::default());
    let payload = "x".repeat(64);
    let mut client = Connection::new(config.clone(), Session::plain(Role::Client, Draft::Rfc6455));
    client.send_text(&payload).unwrap();
    let frame = client.take_output();
    assert_eq!(frame.len(), 64 + 6);

    let mut g = c.benchmark_group("frame");
    let mut server = Connection::new(config.clone(), Session::plain(Role::Server, Draft::Rfc6455));
    g.bench_function("decode_masked_text_64B_to_event", |b| {
        b.iter(|| {
            server.receive(black_box(&frame));
            black_box(server.poll().unwrap().unwrap())
        })
    });
    let mut server = Connection::new(config.clone(), Session::plain(Role::Server, Draft::Rfc6455));
    g.bench_function("decode_masked_text_64B_to_borrowed_event", |b| {
        b.iter(|| {
            server.receive(black_box(&frame));
            black_box(server.poll_ref().unwrap().unwrap());
        })
    });
    // A read that delivers 100 frames at once, as a busy connection sees
    // them: the receive copy is amortised, the per-frame decode remains.
    let batch: Vec<u8> = frame
        .iter()
        .copied()
        .cycle()
        .take(frame.len() * 100)
        .collect();
    let mut server = Connection::new(config.clone(), Session::plain(Role::Server, Draft::Rfc6455));
    g.throughput(Throughput::Elements(100));
    g.bench_function("decode_masked_text_64B_x100_batch", |b| {
        b.iter(|| {
            server.receive(black_box(&batch));
            while let Some(e) = server.poll().unwrap() {
                black_box(e);
            }
        })
    });
    g.throughput(Throughput::Elements(1));
    let mut server = Connection::new(config.clone(), Session::plain(Role::Server, Draft::Rfc6455));
    g.bench_function("encode_server_text_64B", |b| {
        b.iter(|| {
            server.send_text(black_box(&payload)).unwrap();
            let n = server.pending_output().len();
            server.advance_output(n);
        })
    });
    let mut hixie = Connection::new(config, Session::plain(Role::Server, Draft::Hixie76));
    let sentinel = [&[0u8][..], payload.as_bytes(), &[0xFF]].concat();
    g.bench_function("decode_hixie_text_64B_to_event", |b| {
        b.iter(|| {
            hixie.receive(black_box(&sentinel));
            black_box(hixie.poll().unwrap().unwrap())
        })
    });
    g.finish();
}

fn handshakes(c: &mut Criterion) {
    use polysocket::handshake::{AcceptOptions, ServerHandshake};
    let config = Arc::new(Config::default());
    // What Chrome sends, permessage-deflate offer included.
    let rfc6455 = b"GET /chat HTTP/1.1\r\nHost: localhost:9001\r\nConnection: Upgrade\r\n\
Pragma: no-cache\r\nCache-Control: no-cache\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) \
AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36\r\nUpgrade: websocket\r\n\
Origin: http://localhost:9001\r\nSec-WebSocket-Version: 13\r\nAccept-Encoding: gzip, deflate, br\r\n\
Accept-Language: en-US,en;q=0.9\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";
    // The hixie-76 draft's own example request.
    let hixie76 = b"GET /demo HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\nSec-WebSocket-Protocol: sample\r\nUpgrade: WebSocket\r\n\
Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\nOrigin: http://example.com\r\n\r\n^n:ds[4U";
    let mut g = c.benchmark_group("handshake");
    for (name, request) in [
        ("rfc6455_parse_and_answer", &rfc6455[..]),
        ("hixie76_parse_and_answer", &hixie76[..]),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut hs = ServerHandshake::new(config.clone());
                hs.feed(black_box(request)).unwrap();
                black_box(hs.accept(&AcceptOptions::default()).unwrap())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, masking, utf8, frames, handshakes);
criterion_main!(benches);
