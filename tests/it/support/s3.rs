//! S3: s3s + s3s-fs, verifying SigV4, and stubs in front of it where a fault must be injected.

use super::*;

/// A real S3-compatible server (s3s over s3s-fs) that accepts only requests
/// signed (header or presigned SigV4) with the given key pair; unsigned
/// requests get 403 AccessDenied.
///
/// s3s-fs stores object `key` of `bucket` at `root/bucket/key` (a key's `/`
/// become directories), so [`S3Server::put_object`] writes files directly.
pub struct S3Server {
    // First field: dropped first, so the server stops before `root` is deleted.
    _server: BackgroundServer,
    pub port: u16,
    pub root: TempDir,
}

impl S3Server {
    /// Path-style only: `http://127.0.0.1:PORT/bucket/key`.
    pub fn start(access_key: &str, secret_key: &str) -> S3Server {
        Self::start_inner(access_key, secret_key, None)
    }

    /// Also accept virtual-hosted-style requests, `Host: bucket.DOMAIN:PORT`.
    /// `domain` is given without a port (e.g. `"s3.localhost"`); the port is
    /// appended because s3s matches the Host header verbatim, port included.
    /// Path-style still works when Host is an IP (`127.0.0.1:PORT`) or
    /// exactly `DOMAIN:PORT`; any other host name is taken as a bucket name.
    pub fn start_with_domain(access_key: &str, secret_key: &str, domain: &str) -> S3Server {
        Self::start_inner(access_key, secret_key, Some(domain))
    }

    /// Path-style, and every request that `gate` matches is held until the gate opens, so a
    /// test can act while an upload is in flight.
    pub fn start_gated(access_key: &str, secret_key: &str, gate: &Gate) -> S3Server {
        Self::start_full(access_key, secret_key, None, Some(gate.clone()))
    }

    pub(crate) fn start_inner(
        access_key: &str,
        secret_key: &str,
        domain: Option<&str>,
    ) -> S3Server {
        Self::start_full(access_key, secret_key, domain, None)
    }

    /// Path-style, behind a stub that answers any request carrying an `x-amz-checksum-*`
    /// header with 400 InvalidArgument, as some S3-compatible stores did (aws-cli#9214); the
    /// rest reaches s3s-fs. `refused` counts the refusals.
    pub fn start_refusing_checksums(
        access_key: &str,
        secret_key: &str,
        refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ) -> S3Server {
        let root = tempfile::tempdir().expect("s3 root tempdir");
        let fs = s3s_fs::FileSystem::new(root.path()).expect("s3s_fs::FileSystem::new");
        let listener = bind_any();
        let port = listener.local_addr().expect("local_addr").port();
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(access_key, secret_key));
        let s3 = builder.build();
        let stub = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let s3 = s3.clone();
            let refused = refused.clone();
            async move {
                let carries = req
                    .headers()
                    .keys()
                    .any(|name| name.as_str().starts_with("x-amz-checksum-"));
                if carries {
                    refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InvalidArgument</Code><Message>x-amz-checksum-* headers are not supported</Message></Error>";
                    let response = http::Response::builder()
                        .status(400)
                        .header("content-type", "application/xml")
                        .body(s3s::Body::from(body.to_owned()))
                        .expect("a stub response");
                    return Ok(response);
                }
                hyper::service::Service::call(&s3, req).await
            }
        });
        let server = BackgroundServer::start("s3", listener, stub);
        S3Server {
            port,
            root,
            _server: server,
        }
    }

    pub(crate) fn start_full(
        access_key: &str,
        secret_key: &str,
        domain: Option<&str>,
        gate: Option<Gate>,
    ) -> S3Server {
        let root = tempfile::tempdir().expect("s3 root tempdir");
        let fs = s3s_fs::FileSystem::new(root.path()).expect("s3s_fs::FileSystem::new");
        let listener = bind_any();
        let port = listener.local_addr().expect("local_addr").port();

        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(access_key, secret_key));
        let domain = domain.map(|d| format!("{d}:{port}"));
        if let Some(d) = &domain {
            let host = s3s::host::SingleDomain::new(d)
                .unwrap_or_else(|e| panic!("bad S3 domain {d:?}: {e}"));
            builder.set_host(host);
        }
        let s3 = builder.build();
        let server = match gate {
            None => BackgroundServer::start("s3", listener, s3),
            Some(gate) => {
                let gated =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let s3 = s3.clone();
                        let gate = gate.clone();
                        async move {
                            if gate.matches(&req) {
                                gate.hold().await;
                            }
                            hyper::service::Service::call(&s3, req).await
                        }
                    });
                BackgroundServer::start("s3", listener, gated)
            }
        };
        S3Server {
            port,
            root,
            _server: server,
        }
    }

    /// `http://127.0.0.1:PORT`, the path-style endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn create_bucket(&self, bucket: &str) {
        let dir = self.root.path().join(bucket);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("create bucket dir {}: {e}", dir.display()));
    }

    /// Store an object (creating its bucket). No metadata sidecar is needed:
    /// s3s-fs computes the ETag from the file, and Content-Type is then absent.
    pub fn put_object(&self, bucket: &str, key: &str, bytes: &[u8]) {
        assert!(
            !key.is_empty()
                && !key.ends_with('/')
                && !key.split('/').any(|s| s == ".." || s == "."),
            "put_object: key {key:?} cannot be stored as a plain file by s3s-fs"
        );
        self.create_bucket(bucket);
        let path = self.root.path().join(bucket).join(key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
        }
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

/// Holds the S3 requests it matches (by method and a substring of the path and query) until
/// it is opened. Opening is for good: later matches pass at once.
#[derive(Clone)]
pub struct Gate {
    method: &'static str,
    needle: &'static str,
    held: std::sync::Arc<(std::sync::Mutex<usize>, std::sync::Condvar)>,
    open: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
}

impl Gate {
    /// Matches `method` requests whose path-and-query contains `needle`.
    pub fn new(method: &'static str, needle: &'static str) -> Gate {
        Gate {
            method,
            needle,
            held: Default::default(),
            open: std::sync::Arc::new(tokio::sync::watch::channel(false).0),
        }
    }

    pub(crate) fn matches<B>(&self, req: &http::Request<B>) -> bool {
        req.method().as_str() == self.method
            && req
                .uri()
                .path_and_query()
                .is_some_and(|p| p.as_str().contains(self.needle))
    }

    pub(crate) async fn hold(&self) {
        let mut open = self.open.subscribe();
        if *open.borrow() {
            return;
        }
        {
            let (count, arrived) = &*self.held;
            *count.lock().expect("gate lock") += 1;
            arrived.notify_all();
        }
        let _ = open.wait_for(|open| *open).await;
    }

    /// Blocks until a matching request is being held (30 s at most).
    pub fn wait_held(&self) {
        let (count, arrived) = &*self.held;
        let guard = count.lock().expect("gate lock");
        let (guard, timeout) = arrived
            .wait_timeout_while(guard, IO_TIMEOUT, |n| *n == 0)
            .expect("gate lock");
        assert!(
            !timeout.timed_out() || *guard > 0,
            "no {} request matching {:?} reached the S3 server within {IO_TIMEOUT:?}",
            self.method,
            self.needle
        );
    }

    /// Lets every held and future request through.
    pub fn open(&self) {
        self.open.send_replace(true);
    }
}

/// S3-style URI encoding of an object key for a path: every byte except
/// `A-Za-z0-9-._~` and `/` becomes `%XX` (uppercase hex).
pub fn encode_key(key: &str) -> String {
    aws_encode(key, true)
}

pub(crate) fn aws_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A SigV4 presigned URL (query-string auth, `UNSIGNED-PAYLOAD`, region
/// us-east-1) for `base` + `encoded_path`, e.g.
/// `presign("GET", "http://127.0.0.1:PORT", "/bucket/a%20b", ak, sk, 60s)`.
/// The Host that must be sent is `base`'s authority (what [`follow`] sends).
pub fn presign(
    method: &str,
    base: &str,
    encoded_path: &str,
    access_key: &str,
    secret_key: &str,
    expires_in: Duration,
) -> String {
    use aws_sigv4::http_request::{
        sign, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningParams,
        SigningSettings, UriPathNormalizationMode,
    };
    let identity = aws_credential_types::Credentials::new(
        access_key,
        secret_key,
        None,
        None,
        "spillway-tests",
    )
    .into();
    // S3 rules: the path is already encoded once and must not be re-encoded
    // or normalised; the body is not part of a presigned signature.
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(expires_in);
    let params: SigningParams = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("s3")
        .time(std::time::SystemTime::now())
        .settings(settings)
        .build()
        .expect("sigv4 params")
        .into();
    let url = format!("{base}{encoded_path}");
    let signable = SignableRequest::new(
        method,
        url.as_str(),
        std::iter::empty(),
        SignableBody::UnsignedPayload,
    )
    .expect("signable request");
    let (instructions, _signature) = sign(signable, &params).expect("sign").into_parts();
    let query: Vec<String> = instructions
        .params()
        .iter()
        .map(|(k, v)| format!("{}={}", aws_encode(k, false), aws_encode(v, false)))
        .collect();
    format!("{url}?{}", query.join("&"))
}
