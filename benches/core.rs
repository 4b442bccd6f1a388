//! Micro-benchmarks of the request hot path: `cargo bench --bench core`.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion};
use http::Method;
use spillway::config;
use spillway::core::decide::{decide, Request};
use spillway::core::path::decode_relative;
use spillway::core::policy::{Access, Policy};
use spillway::core::route::RouteTable;
use spillway::fs::docroot::MayBlock;
use spillway::s3::sigv4::{self, Keys, Presign};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

fn no_var(_: &str) -> Option<String> {
    None
}

fn no_chain(_region: &str) -> Result<spillway::s3::sigv4::Keys, String> {
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

    let keys = Keys::new(
        "AKIDEXAMPLE",
        "secret",
        Some("session-token".into()),
        None,
        "bench",
    );
    let presign = Presign {
        method: "GET",
        origin: "https://media.s3.us-east-1.amazonaws.com",
        host: "media.s3.us-east-1.amazonaws.com",
        path: "/uploads/private/2024/report%20Q1.pdf",
        extra_query: &[],
        region: "us-east-1",
        time: now,
        expires: Duration::from_secs(300),
    };
    c.bench_function("presign/spillway sigv4 (cached signing key)", |b| {
        b.iter(|| sigv4::presign(&keys, black_box(&presign)))
    });
    let identity: Identity = Credentials::new(
        "AKIDEXAMPLE",
        "secret",
        Some("session-token".into()),
        None,
        "bench",
    )
    .into();
    c.bench_function("presign/aws-sigv4 http_request::sign", |b| {
        b.iter(|| {
            let mut settings = SigningSettings::default();
            settings.percent_encoding_mode = PercentEncodingMode::Single;
            settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
            settings.signature_location = SignatureLocation::QueryParams;
            settings.expires_in = Some(Duration::from_secs(300));
            let params = v4::SigningParams::builder()
                .identity(&identity)
                .region("us-east-1")
                .name("s3")
                .time(now)
                .settings(settings)
                .build()
                .unwrap()
                .into();
            let url =
                "https://media.s3.us-east-1.amazonaws.com/uploads/private/2024/report%20Q1.pdf";
            let request = SignableRequest::new(
                "GET",
                url,
                std::iter::empty(),
                SignableBody::UnsignedPayload,
            )
            .unwrap();
            sign(request, &params).unwrap()
        })
    });

    for count in [1usize, 100] {
        let mut table = RouteTable::default();
        for i in 0..count {
            table.insert(&format!("/section{i}/files"), i).unwrap();
        }
        let last = format!("/section{}/files/a/b/c.png", count - 1);
        c.bench_function(&format!("route/lookup over {count} routes (last)"), |b| {
            b.iter(|| table.lookup(black_box(&last)))
        });
    }
    let mut policy = Policy::new(Access::Public);
    for i in 0..50 {
        policy
            .add_rule(&format!("private/{i}/**/*.pdf"), Access::Public)
            .unwrap();
    }
    c.bench_function("policy/50 rules, no match", |b| {
        b.iter(|| policy.evaluate(black_box("public/2024/06/photo-12345.jpg")))
    });

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
                &config.site,
                &get(black_box("/uploads/hit.txt")),
                now,
                &MayBlock,
            )
        })
    });
    c.bench_function("decide/miss public redirect", |b| {
        b.iter(|| {
            decide(
                &config.site,
                &get(black_box("/uploads/avatars/a%20b.png")),
                now,
                &MayBlock,
            )
        })
    });
    c.bench_function("decide/miss presigned redirect", |b| {
        b.iter(|| {
            decide(
                &config.site,
                &get(black_box("/uploads/private/doc.pdf")),
                now,
                &MayBlock,
            )
        })
    });
}

/// What a request adds for metrics and for an access log line (formatting and queueing; the
/// writer thread's work is not on the request path).
fn telemetry(c: &mut Criterion) {
    use spillway::config::{LogFormat, LogSink};
    use spillway::core::outcome::Outcome;
    use spillway::telemetry::access_log::{AccessLog, Entry};
    use spillway::telemetry::metrics::{Metrics, Observation};
    let metrics = Metrics::new();
    let observation = Observation {
        route: Some((0, "/uploads")),
        outcome: Outcome::Served,
        status: Some(http::StatusCode::OK),
        duration: Duration::from_micros(120),
        body_bytes: 1024,
    };
    c.bench_function("telemetry/metrics observe", |b| {
        b.iter(|| metrics.observe(black_box(&observation)))
    });
    let entry = Entry {
        time: SystemTime::now(),
        client: Some("127.0.0.1".parse().unwrap()),
        method: "GET",
        path: "/uploads/2026/photo.jpg",
        protocol: "HTTP/1.1",
        outcome: Outcome::Served,
        status: Some(http::StatusCode::OK),
        body_bytes: 1024,
        duration: Duration::from_micros(120),
        route: Some("/uploads"),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0"),
        referer: Some("https://example.com/page"),
        request_id: "be4db921ec2031450000000000000000",
        reason: None,
        cut_short: None,
        would: None,
    };
    let dir = tempfile::tempdir().unwrap();
    for (name, format) in [
        ("json", LogFormat::Json),
        ("combined", LogFormat::Combined),
        ("text", LogFormat::Text),
    ] {
        let sink = LogSink::File(dir.path().join(format!("{name}.log")));
        let log = AccessLog::start(format, &sink, metrics.log_dropped.clone()).unwrap();
        c.bench_function(&format!("telemetry/access log {name} line"), |b| {
            b.iter(|| log.write(black_box(&entry)))
        });
    }
}

criterion_group!(benches, bench, telemetry);
criterion_main!(benches);
