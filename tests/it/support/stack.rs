//! The whole stack: S3, legacy upstream and spillway wired together.

use super::*;

/// The key pair the test S3 server accepts.
pub const ACCESS_KEY: &str = "AKIDSPILLWAYTEST";
pub const SECRET_KEY: &str = "spillway-test-secret";

/// A real S3 server (bucket `media`), a real legacy upstream, and spillway in front of both.
///
/// Routes (roots under `<spillway dir>/www`):
/// - `/uploads` → bucket `media`, key prefix `uploads/`, private (ttl 5m); `avatars/**` public
/// - `/forged`  → bucket `forged`: the same server, signed with a wrong secret
/// - `/static`  → no bucket (a miss is 404)
pub struct Stack {
    pub s3: S3Server,
    /// Kept for its lifetime: the proxy forwards to it.
    _legacy: Legacy,
    pub proxy: Spillway,
    /// The TLS listener's port, with [`StackOptions::tls`].
    pub tls_port: Option<u16>,
}

pub struct StackOptions {
    /// Whether `default_upstream` is set.
    pub upstream: bool,
    /// YAML appended to the route list (indented as list items).
    pub extra_routes: &'static str,
    /// Directories to create under `www/` before spillway starts (roots of `extra_routes`).
    pub extra_roots: &'static [&'static str],
    /// Run spillway as `nobody` when the tests run as root (see [`Spillway::start_as`]).
    pub unprivileged: bool,
    /// Also listen with TLS (on [`Stack::tls_port`]) with these certificates.
    pub tls: Option<TlsFiles>,
    /// YAML added at the top level (e.g. `limits:`).
    pub extra_top: String,
}

/// A TLS listener's certificate and key files, and more for SNI.
#[derive(Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub sni: Vec<(PathBuf, PathBuf)>,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            upstream: true,
            extra_routes: "",
            extra_roots: &[],
            unprivileged: false,
            tls: None,
            extra_top: String::new(),
        }
    }
}

impl Stack {
    pub fn start() -> Stack {
        Stack::start_with(StackOptions::default())
    }

    pub fn start_with(options: StackOptions) -> Stack {
        let s3 = S3Server::start(ACCESS_KEY, SECRET_KEY);
        s3.create_bucket("media");
        let legacy = Legacy::start();
        let endpoint = s3.endpoint();
        let legacy_port = legacy.port;
        let uid = options.unprivileged.then_some(NOBODY);
        // Chosen afresh at each try, as the plain port is: a retry after a port in use must
        // not take the same TLS port again.
        let chosen = std::cell::Cell::new(None);
        let proxy = Spillway::start_as(uid, &[], |port, dir| {
            let tls_port = options.tls.as_ref().map(|_| free_port());
            chosen.set(tls_port);
            let listen = match (&options.tls, tls_port) {
                (Some(tls), Some(tls_port)) => {
                    let mut sni = String::new();
                    for (cert, key) in &tls.sni {
                        sni.push_str(&format!(
                            "\n        - cert: \"{}\"\n          key: \"{}\"",
                            cert.display(),
                            key.display()
                        ));
                    }
                    let sni = if sni.is_empty() {
                        String::new()
                    } else {
                        format!("\n      sni:{sni}")
                    };
                    format!(
                        "listen:\n  - \"127.0.0.1:{port}\"\n  - address: \"127.0.0.1:{tls_port}\"\n    tls:\n      cert: \"{}\"\n      key: \"{}\"{sni}\n",
                        tls.cert.display(),
                        tls.key.display()
                    )
                }
                _ => format!("listen: \"127.0.0.1:{port}\"\n"),
            };
            let roots = ["uploads/avatars", "forged", "static"];
            for sub in roots.iter().chain(options.extra_roots) {
                std::fs::create_dir_all(dir.join("www").join(sub)).expect("create www");
            }
            let upstream = if options.upstream {
                format!("upstreams:\n  legacy:\n    address: \"127.0.0.1:{legacy_port}\"\n    connect_timeout: 1s\ndefault_upstream: legacy\n")
            } else {
                String::new()
            };
            format!(
                r#"{listen}threads: 1
shutdown:
  grace_period: 60s
  timeout: 1s
{}{upstream}buckets:
  media:
    bucket: media
    region: us-east-1
    endpoint: "{endpoint}"
    credentials:
      access_key_id: "{ACCESS_KEY}"
      secret_access_key: "{SECRET_KEY}"
  forged:
    bucket: media
    region: us-east-1
    endpoint: "{endpoint}"
    credentials:
      access_key_id: "{ACCESS_KEY}"
      secret_access_key: "not-the-secret"
routes:
  - prefix: /uploads
    root: www/uploads
    bucket: media
    key_prefix: uploads/
    access: private
    ttl: 5m
    rules:
      - match: "avatars/**"
        access: public
  - prefix: /forged
    root: www/forged
    bucket: forged
    key_prefix: uploads/
  - prefix: /static
    root: www/static
{}"#,
                options.extra_top, options.extra_routes
            )
        });
        Stack {
            s3,
            _legacy: legacy,
            proxy,
            tls_port: chosen.get(),
        }
    }

    /// Where a route's files live: `www(\"uploads\")`.
    pub fn www(&self, route: &str) -> PathBuf {
        self.proxy.spillway_dir().join("www").join(route)
    }

    /// Puts a file under a route's root, creating directories.
    pub fn put_local(&self, route: &str, relative: &str, bytes: &[u8]) -> PathBuf {
        let path = self.www(route).join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, bytes).expect("write local file");
        path
    }

    pub fn port(&self) -> u16 {
        self.proxy.port
    }
}
