//! Micro-benchmarks of the codec, in both encodings: decoding a `set`
//! request's envelope (the value stays raw MessagePack bytes, never
//! decoded), and encoding a `val` event for a subscriber.
//!
//!     cargo bench -p ipcbus-bench --bench codec

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ipcbus_protocol::{json, msgpack, transcode, Life, Op, Request, ServerMsg};
use std::borrow::Cow;
use std::hint::black_box;

const KEY: &str = "svc.weather.today";

/// A 100-byte string, as MessagePack.
fn value() -> Bytes {
    Bytes::from(rmp_serde::to_vec(&"x".repeat(100)).expect("encode value"))
}

fn decode(c: &mut Criterion) {
    let request = Request {
        id: Some(42),
        op: Op::Set {
            key: Cow::Borrowed(KEY),
            value: value(),
            if_rev: None,
            life: Life::default(),
        },
    };
    let mut buf = BytesMut::new();
    msgpack::encode_request(&request, &mut buf);
    let frame = buf.split().freeze();
    json::encode_request(&request, &mut buf).expect("encode as JSON");
    let text = String::from_utf8(buf.to_vec()).expect("JSON is UTF-8");

    let mut group = c.benchmark_group("decode set request, 100-byte value");
    group.throughput(Throughput::Elements(1));
    group.bench_function("msgpack", |b| {
        b.iter(|| msgpack::decode_request(black_box(&frame)).map(|r| r.id));
    });
    group.bench_function("json (value transcoded to msgpack)", |b| {
        b.iter(|| json::decode_request(black_box(&text)).map(|r| r.id));
    });
    group.finish();
}

fn encode(c: &mut Criterion) {
    let value = value();
    let event = ServerMsg::Val {
        sub: 7,
        key: Cow::Borrowed(KEY),
        value: value.clone(),
        rev: 123_456,
        meta: None,
    };
    // The server renders a value as JSON once per write, for every JSON subscriber.
    let rendered = transcode::msgpack_to_json(&value).expect("render as JSON");
    let mut buf = BytesMut::with_capacity(256);

    let mut group = c.benchmark_group("encode val event, 100-byte value");
    group.throughput(Throughput::Elements(1));
    group.bench_function("msgpack", |b| {
        b.iter(|| {
            buf.clear();
            msgpack::encode_server(black_box(&event), &mut buf);
            buf.len()
        });
    });
    group.bench_function("json (value rendered once per write)", |b| {
        b.iter(|| {
            buf.clear();
            json::encode_server(black_box(&event), Some(&rendered), &mut buf).map(|()| buf.len())
        });
    });
    group.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
