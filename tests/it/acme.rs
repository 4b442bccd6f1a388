//! Certificates from a real ACME server (Debian's pebble): ordered at start over HTTP-01 and
//! over TLS-ALPN-01, kept in the state directory and reused by the next start, renewed under
//! load without one failed handshake, and kept when a renewal fails.

use crate::support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::blocking::Client;
use support::{free_port, scrape, wait_until, Pebble, PebbleOptions, Spillway};

const NAMES: [&str; 2] = ["files.spillway.test", "www.spillway.test"];

/// spillway with an `acme:` TLS listener on `tls_port` (and a plain one on `plain_port`, the
/// port pebble validates HTTP-01 on, unless `challenge` is tls-alpn-01), an admin port, and a
/// route serving `hello.txt`. `state` is the state directory, kept across starts.
fn start(pebble: &Pebble, ports: Ports, challenge: &str, state: &Path) -> Spillway {
    start_from(&pebble.directory, pebble, ports, challenge, state)
}

/// `start`, with pebble's directory URL spelled `directory`.
fn start_from(
    directory: &str,
    pebble: &Pebble,
    ports: Ports,
    challenge: &str,
    state: &Path,
) -> Spillway {
    let plain = match challenge {
        "http-01" => format!("  - \"127.0.0.1:{}\"\n", ports.plain),
        _ => String::new(),
    };
    let yaml = |_: u16, dir: &Path| {
        std::fs::create_dir_all(dir.join("www")).expect("mkdir www");
        std::fs::write(dir.join("www/hello.txt"), "hello over acme\n").expect("write");
        format!(
            "listen:\n{plain}  - address: \"127.0.0.1:{tls}\"\n    tls:\n      acme:\n        \
             domains: [{names}]\n        contact: mailto:ops@spillway.test\n        \
             directory: {directory}\n        directory_ca: {ca}\n        state_dir: {state}\n        \
             challenge: {challenge}\nadmin: \"127.0.0.1:{admin}\"\nroutes:\n  - prefix: /files\n    \
             root: www\n",
            tls = ports.tls,
            names = NAMES.join(", "),
            ca = pebble.https_ca.display(),
            state = state.display(),
            admin = ports.admin,
        )
    };
    // The readiness port: the plain listener, or the TLS one (it listens before it has a
    // certificate: handshakes fail until the first is issued).
    let first = if plain.is_empty() {
        ports.tls
    } else {
        ports.plain
    };
    Spillway::try_start(None, &[], None, first, yaml).unwrap_or_else(|e| panic!("{e}"))
}

#[derive(Clone, Copy)]
struct Ports {
    plain: u16,
    tls: u16,
    admin: u16,
}

impl Ports {
    fn new() -> Ports {
        Ports {
            plain: free_port(),
            tls: free_port(),
            admin: free_port(),
        }
    }
}

/// A client that trusts only pebble's issuing root, finds both names at the TLS port, and
/// makes a full handshake for every request: a new connection each time, and no session
/// resumption (a resumed session would show the certificate of the session it resumes).
fn client(root: &str, tls_port: u16) -> Client {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let root = rustls::pki_types::CertificateDer::from_pem_slice(root.as_bytes()).expect("root");
    roots.add(root).expect("a root");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.resumption = rustls::client::Resumption::disabled();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut builder = Client::builder()
        .use_preconfigured_tls(tls)
        .tls_info(true)
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(20));
    for name in NAMES {
        builder = builder.resolve(name, SocketAddr::from(([127, 0, 0, 1], tls_port)));
    }
    builder.build().expect("client")
}

/// The served certificate (its DER), after a GET of `hello.txt` that checks the body.
fn fetch(client: &Client, name: &str, port: u16) -> Result<Vec<u8>, String> {
    let response = client
        .get(format!("https://{name}:{port}/files/hello.txt"))
        .send()
        .map_err(|e| format!("{e:?}"))?;
    let leaf = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .map(<[u8]>::to_vec)
        .ok_or("no peer certificate")?;
    let status = response.status();
    let body = response.text().map_err(|e| format!("{e:?}"))?;
    if status != 200 || body != "hello over acme\n" {
        return Err(format!("{status}: {body:?}"));
    }
    Ok(leaf)
}

/// Waits for the first certificate, then returns it.
fn first_certificate(client: &Client, port: u16) -> Vec<u8> {
    let mut served = None;
    wait_until("a certificate issued by pebble", || {
        served = fetch(client, NAMES[0], port).ok();
        served.is_some()
    });
    served.expect("a certificate")
}

/// The certificate's DNS names and its not-after time (Unix seconds).
fn names_and_expiry(der: &[u8]) -> (Vec<String>, i64) {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("a certificate");
    let mut names: Vec<String> = cert
        .subject_alternative_name()
        .expect("SAN")
        .expect("SAN")
        .value
        .general_names
        .iter()
        .map(|n| {
            n.to_string()
                .trim_start_matches("DNSName(")
                .trim_end_matches(')')
                .to_owned()
        })
        .collect();
    // In the order of the config (a CA may list them in any).
    names.sort_by_key(|n| NAMES.iter().position(|m| m == n));
    (names, cert.validity().not_after.timestamp())
}

/// pebble validating at `ports`, issuing certificates valid for `validity` (its default if none).
fn pebble_for(ports: Ports, validity: Option<Duration>) -> Pebble {
    Pebble::start(PebbleOptions {
        http_port: ports.plain,
        tls_port: ports.tls,
        validity,
    })
}

fn metric(admin: u16, name: &str) -> Option<f64> {
    scrape(admin).get(name).copied()
}

#[test]
fn http01_orders_a_certificate_at_start_and_a_restart_reuses_it() {
    let ports = Ports::new();
    let mut pebble = pebble_for(ports, None);
    let state = tempfile::tempdir().expect("state dir");
    let state_dir = state.path().join("acme");
    let spillway = start(&pebble, ports, "http-01", &state_dir);
    let client = client(&pebble.issuing_root(), ports.tls);
    let served = first_certificate(&client, ports.tls);
    assert_eq!(support::get(ports.admin, "/readyz").status, 200);
    // One certificate for both names, trusted through pebble's chain (the client checks it).
    assert_eq!(fetch(&client, NAMES[1], ports.tls), Ok(served.clone()));
    let (names, not_after) = names_and_expiry(&served);
    assert_eq!(names, NAMES);
    // Said once, counted, and its expiry exported.
    let logs = spillway.logs();
    assert!(
        logs.contains("ordering a certificate for files.spillway.test, www.spillway.test from"),
        "{logs}"
    );
    assert!(
        logs.contains(
            "acme: certificate for files.spillway.test, www.spillway.test issued, valid until"
        ),
        "{logs}"
    );
    assert_eq!(
        metric(
            ports.admin,
            "spillway_certificate_renewals_total{name=files.spillway.test,result=ok}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            ports.admin,
            "spillway_certificate_expiry_timestamp_seconds{name=files.spillway.test}"
        ),
        Some(not_after as f64)
    );
    assert_eq!(
        metric(
            ports.admin,
            "spillway_requests_total{outcome=acme_challenge,route=-,status=200}"
        ),
        Some(2.0 * 3.0),
        "each name validated over the plain listener, from pebble's three perspectives"
    );
    // The key is the operator's only: directory 0700, files 0600.
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&state_dir), 0o700);
    // One certificate file per CA: named by the first domain and the directory's tag.
    let pems: Vec<_> = std::fs::read_dir(&state_dir)
        .expect("ls")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pem"))
        .collect();
    assert_eq!(pems.len(), 1, "{pems:?}");
    let stored = pems[0].clone();
    let file_name = stored.file_name().unwrap().to_string_lossy().into_owned();
    assert!(file_name.starts_with("files.spillway.test."), "{file_name}");
    assert_eq!(mode(&stored), 0o600);
    let accounts: Vec<_> = std::fs::read_dir(&state_dir)
        .expect("ls")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("account-"))
        .collect();
    assert_eq!(accounts.len(), 1, "{accounts:?}");
    assert_eq!(mode(&state_dir.join(&accounts[0])), 0o600);
    // `check` shows where it comes from and what is stored.
    let check = support::run_cli(&[
        "check",
        "--config",
        spillway.config_path().to_str().unwrap(),
    ]);
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(
        said.contains(&format!(
            "  acme: files.spillway.test, www.spillway.test from {} by http-01; state {}\n",
            pebble.directory,
            state_dir.display()
        )),
        "{said}"
    );
    // The test's plain listener is not on port 80, where a public CA would ask.
    assert!(
        said.contains("  warning: the CA validates http-01 on port 80 and no plain listener here is on it: forward port 80 to one, or use `challenge: tls-alpn-01`\n"),
        "{said}"
    );
    // The names as the certificate lists them (pebble's order varies).
    let listed = [
        "files.spillway.test, www.spillway.test",
        "www.spillway.test, files.spillway.test",
    ];
    assert!(
        listed.iter().any(|names| said.contains(&format!(
            "  certificate {names}: issuer CN=Pebble Intermediate CA"
        ))),
        "{said}"
    );

    // Stopped, and the CA gone: the next start serves the stored certificate at once.
    drop(spillway);
    pebble.stop();
    let again = start(&pebble, ports, "http-01", &state_dir);
    assert_eq!(fetch(&client, NAMES[0], ports.tls), Ok(served));
    // The certificate service says one of the two first: stored, or ordering.
    let logs = again.wait_for_log(" certificate for files.spillway.test, www.spillway.test ");
    assert!(
        logs.contains(&format!(
            "acme: certificate for files.spillway.test, www.spillway.test from {}, valid until",
            stored.display()
        )),
        "{logs}"
    );
    assert!(!logs.contains("ordering"), "{logs}");
}

/// Replicas behind one load balancer share `state_dir`, and the CA's HTTP-01 request reaches
/// any of them, often not the one that ordered.
#[test]
fn http01_is_answered_by_any_process_sharing_the_state_dir() {
    let ports = Ports::new();
    let pebble = pebble_for(ports, None);
    let state = tempfile::tempdir().expect("state dir");
    let state_dir = state.path().join("acme");
    // The process pebble's validations reach (at its plain port); it has its certificate.
    let reached = start(&pebble, ports, "http-01", &state_dir);
    first_certificate(&client(&pebble.issuing_root(), ports.tls), ports.tls);
    // The tokens answered (pebble asks for each from several vantage points, as CAs do).
    let answered = |s: &Spillway| {
        let logs = s.logs();
        let tokens: BTreeSet<&str> = logs
            .lines()
            .filter(|l| l.contains("outcome=\"acme_challenge\""))
            .filter_map(|l| l.split(" path=\"").nth(1)?.split('"').next())
            .collect();
        tokens.len()
    };
    wait_until("its own two validations logged", || answered(&reached) == 2);
    // Another orders the same names from the same CA under another spelling of its URL (so
    // another account and certificate file); pebble never asks at its own plain port.
    let elsewhere = Ports::new();
    let directory = pebble.directory.replace("127.0.0.1", "localhost");
    let ordering = start_from(&directory, &pebble, elsewhere, "http-01", &state_dir);
    let served = first_certificate(
        &client(&pebble.issuing_root(), elsewhere.tls),
        elsewhere.tls,
    );
    assert_eq!(names_and_expiry(&served).0, NAMES);
    wait_until("the other's two validations logged", || {
        answered(&reached) == 4
    });
    assert_eq!(answered(&ordering), 0, "{}", ordering.logs());
    // The answers are withdrawn once the order is decided.
    let left: Vec<_> = std::fs::read_dir(state_dir.join("http-01"))
        .expect("the answers' directory")
        .collect();
    assert_eq!(left.len(), 0, "{left:?}");
}

#[test]
fn tls_alpn01_orders_a_certificate_with_no_plain_listener() {
    let ports = Ports::new();
    let pebble = pebble_for(ports, None);
    let state = tempfile::tempdir().expect("state dir");
    let spillway = start(&pebble, ports, "tls-alpn-01", &state.path().join("acme"));
    let client = client(&pebble.issuing_root(), ports.tls);
    let served = first_certificate(&client, ports.tls);
    assert_eq!(names_and_expiry(&served).0, NAMES);
    assert_eq!(
        metric(
            ports.admin,
            "spillway_certificate_renewals_total{name=files.spillway.test,result=ok}"
        ),
        Some(1.0)
    );
    // Ordinary clients still get h2 on that listener.
    let h2 = client
        .get(format!(
            "https://{}:{}/files/hello.txt",
            NAMES[0], ports.tls
        ))
        .send()
        .expect("GET");
    assert_eq!(h2.version(), reqwest::Version::HTTP_2);
    drop(spillway);
}

#[test]
fn renewal_under_load_swaps_certificates_without_one_failed_handshake() {
    renews_under_load("http-01");
}

/// Over TLS-ALPN-01 the CA's handshakes and the clients' arrive at one listener while each
/// renewal's validation is open: the clients' go through the hook untouched.
#[test]
fn tls_alpn01_renewal_under_load_fails_no_ordinary_handshake() {
    renews_under_load("tls-alpn-01");
}

fn renews_under_load(challenge: &str) {
    let ports = Ports::new();
    // Renewed two thirds in: every 8 s, 4 s before the end (an order polls the CA at 0.25,
    // 0.75, 1.75 and 3.75 s: a slow validation still ends in time).
    let pebble = pebble_for(ports, Some(Duration::from_secs(12)));
    let state = tempfile::tempdir().expect("state dir");
    let spillway = start(&pebble, ports, challenge, &state.path().join("acme"));
    let client = client(&pebble.issuing_root(), ports.tls);
    first_certificate(&client, ports.tls);
    // Two clients handshake again and again while spillway renews twice.
    let seen = Mutex::new(BTreeSet::new());
    let failures = Mutex::new(Vec::new());
    let handshakes = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    match fetch(&client, NAMES[0], ports.tls) {
                        Ok(leaf) => {
                            seen.lock().unwrap().insert(leaf);
                        }
                        Err(e) => failures.lock().unwrap().push(e),
                    }
                    handshakes.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let rotated = || seen.lock().unwrap().len() >= 3;
        let waited = std::panic::catch_unwind(|| wait_until("two renewals", rotated));
        done.store(true, Ordering::Relaxed);
        if let Err(panic) = waited {
            std::panic::resume_unwind(panic);
        }
    });
    let failures = failures.into_inner().unwrap();
    assert_eq!(
        failures,
        Vec::<String>::new(),
        "{} handshakes",
        handshakes.load(Ordering::Relaxed)
    );
    assert!(handshakes.into_inner() > 10);
    let renewed = metric(
        ports.admin,
        "spillway_certificate_renewals_total{name=files.spillway.test,result=ok}",
    );
    assert!(renewed >= Some(3.0), "{renewed:?}");
    drop(spillway);
}

#[test]
fn a_failed_renewal_keeps_the_certificate_being_served() {
    let ports = Ports::new();
    // Renewed at about 13 s, valid until 20 s.
    let mut pebble = pebble_for(ports, Some(Duration::from_secs(20)));
    let state = tempfile::tempdir().expect("state dir");
    let spillway = start(&pebble, ports, "http-01", &state.path().join("acme"));
    let client = client(&pebble.issuing_root(), ports.tls);
    let served = first_certificate(&client, ports.tls);
    pebble.stop();
    wait_until("the failed renewal said", || {
        spillway
            .logs()
            .contains("failed: cannot reach the ACME directory")
    });
    let logs = spillway.logs();
    assert!(
        logs.contains("trying again in 1m (the current certificate stays, valid until"),
        "{logs}"
    );
    assert_eq!(fetch(&client, NAMES[0], ports.tls), Ok(served.clone()));
    let failed = "spillway_certificate_renewals_total{name=files.spillway.test,result=failed}";
    assert_eq!(metric(ports.admin, failed), Some(1.0));
    let expiry = "spillway_certificate_expiry_timestamp_seconds{name=files.spillway.test}";
    assert_eq!(
        metric(ports.admin, expiry),
        Some(names_and_expiry(&served).1 as f64)
    );
    drop(spillway);
}

#[test]
fn acme_settings_are_checked_where_they_are_written() {
    let dir = tempfile::tempdir().expect("dir");
    let check = |listen: &str| {
        let path = dir.path().join("proxy.yaml");
        let out = support::check_config(&path, &format!("listen:\n{listen}"));
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let acme = |fields: &str| {
        format!("  - address: \"127.0.0.1:8443\"\n    tls:\n      acme:\n        state_dir: acme\n{fields}")
    };
    let plain = "  - \"127.0.0.1:8080\"\n";
    for (listen, said) in [
        (
            acme("        domains: [\"*.example.com\"]\n        challenge: tls-alpn-01\n"),
            "listen[0].tls.acme.domains[0]: \"*.example.com\" is a wildcard: a CA issues wildcards only after a DNS-01 challenge, which spillway does not answer; list each name, or use `cert:` and `key:` for a wildcard certificate made elsewhere at line 6 column 19",
        ),
        (
            acme("        domains: [files.example.com]\n        contact: ops@example.com\n        challenge: tls-alpn-01\n"),
            "listen[0].tls.acme.contact: \"ops@example.com\" is not a `mailto:` address (like mailto:ops@example.com), the only contact ACME CAs take at line 7 column 18",
        ),
        (
            acme("        domains: [files.example.com]\n        directory: http://ca.example/dir\n        challenge: tls-alpn-01\n"),
            "listen[0].tls.acme.directory: \"http://ca.example/dir\" is not an https:// URL; ACME directories are served over HTTPS (Let's Encrypt's is https://acme-v02.api.letsencrypt.org/directory) at line 7 column 20",
        ),
        (
            acme("        domains: [files.example.com]\n"),
            "listen[0].tls.acme: http-01 is answered on a plain listener (the CA asks on port 80), and every listener here has TLS: add one, like \"0.0.0.0:80\", or set `challenge: tls-alpn-01` at line 5 column 9",
        ),
        (
            format!("{plain}  - address: \"127.0.0.1:8443\"\n    tls:\n      cert: a.pem\n      key: a.key\n      acme:\n        domains: [files.example.com]\n        state_dir: acme\n"),
            "listen[1].tls: names both files (`cert:`, `key:`) and `acme:`; keep one of them at line 5 column 7",
        ),
        (
            format!("{plain}  - address: \"127.0.0.1:8443\"\n    tls: {{}}\n"),
            "listen[1].tls: needs `cert:` and `key:` (PEM files), or `acme:` (certificates from an ACME CA such as Let's Encrypt) at line 4 column 10",
        ),
        (
            format!("{plain}{}", acme("        domains: [files.example.com]\n        challenge: dns-01\n")),
            "listen[1].tls.acme.challenge: unknown variant `dns-01`, expected `http-01` or `tls-alpn-01` at line 8 column 20",
        ),
    ] {
        let got = check(&listen);
        assert!(got.contains(said), "{listen}\n--- said ---\n{got}");
    }
}

#[test]
fn with_no_certificate_yet_readiness_waits_and_the_failure_says_so() {
    let ports = Ports::new();
    let mut pebble = pebble_for(ports, None);
    // The CA is gone before spillway starts.
    pebble.stop();
    let state = tempfile::tempdir().expect("state dir");
    let spillway = start(&pebble, ports, "http-01", &state.path().join("acme"));
    wait_until("the failed order said", || {
        spillway
            .logs()
            .contains("trying again in 1m (no certificate is served for these names until one is)")
    });
    let ready = support::get(ports.admin, "/readyz");
    assert_eq!(ready.status, 503);
    assert_eq!(
        ready.text(),
        format!(
            "not ready: 127.0.0.1:{} has no certificate yet: its ACME order is under way (see the log)\n",
            ports.tls
        )
    );
    // Plain HTTP is served meanwhile.
    assert_eq!(support::get(ports.plain, "/files/hello.txt").status, 200);
}
