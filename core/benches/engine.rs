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

criterion_group!(benches, masking, utf8, frames);
criterion_main!(benches);
