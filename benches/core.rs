//! Micro-benchmarks of the request hot path: `cargo bench --bench core`.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion};
use http::Method;
use spillway::config;
use spillway::decide::{decide, Request};
use spillway::docroot::Io;
use spillway::path::decode_relative;

fn no_var(_: &str) -> Option<String> {
    None
}

fn no_chain() -> Result<spillway::sigv4::Keys, String> {
    Err("not used".into())
}

const NO_ENV: config::Environment = config::Environment {
    var: &no_var,
    chain: &no_chain,
};

const CONFIG: &str = r#"listen: "127.0.0.1:0"
buckets:
  media:
    bucket: media
    region: us-east-1
    credentials: { access_key_id: AKIDEXAMPLE, secret_access_key: secret }
routes:
  - prefix: /uploads
    root: www
    bucket: media
    key_prefix: uploads/
    access: private
    rules:
      - { match: "avatars/**", access: public }
"#;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("www")).unwrap();
    std::fs::write(dir.path().join("www/hit.txt"), [b'x'; 1024]).unwrap();
    let config = config::parse(CONFIG, dir.path(), &NO_ENV).unwrap();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);

    c.bench_function("path/decode plain", |b| {
        b.iter(|| decode_relative(black_box("/avatars/2024/06/user-12345.png")))
    });
    let hostile = "/%2e%2e/".repeat(64) + &"%c0%ae".repeat(64);
    c.bench_function("path/decode hostile", |b| {
        b.iter(|| decode_relative(black_box(&hostile)))
    });
    let headers = http::HeaderMap::new();
    let get = |path| Request {
        method: &Method::GET,
        path,
        query: None,
        headers: &headers,
    };
    c.bench_function("decide/hit (openat2 + fstat)", |b| {
        b.iter(|| {
            decide(
                &config,
                &get(black_box("/uploads/hit.txt")),
                now,
                Io::MayBlock,
            )
        })
    });
    c.bench_function("decide/miss public redirect", |b| {
        b.iter(|| {
            decide(
                &config,
                &get(black_box("/uploads/avatars/a%20b.png")),
                now,
                Io::MayBlock,
            )
        })
    });
    c.bench_function("decide/miss presigned redirect", |b| {
        b.iter(|| {
            decide(
                &config,
                &get(black_box("/uploads/private/doc.pdf")),
                now,
                Io::MayBlock,
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
