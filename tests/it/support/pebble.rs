//! A real ACME server: Debian's `pebble`, with `pebble-challtestsrv` as its DNS server (every
//! name resolves to 127.0.0.1), validating HTTP-01 and TLS-ALPN-01 on the ports a test gives.

use super::*;

/// A running pebble and its DNS server; both are killed on drop.
pub struct Pebble {
    /// The ACME directory URL.
    pub directory: String,
    /// The CA that signed pebble's own HTTPS certificate (spillway's `directory_ca:`).
    pub https_ca: PathBuf,
    management: u16,
    https_ca_pem: String,
    children: Vec<Child>,
    _dir: TempDir,
}

/// How pebble is started.
pub struct PebbleOptions {
    /// Where pebble's validator connects for HTTP-01 and TLS-ALPN-01.
    pub http_port: u16,
    pub tls_port: u16,
    /// Lifetime of the certificates it issues; pebble's default (about five years) if none.
    pub validity: Option<Duration>,
}

impl Pebble {
    pub fn start(options: PebbleOptions) -> Pebble {
        for tool in ["pebble", "pebble-challtestsrv"] {
            let found = Command::new(tool).arg("-h").output().is_ok();
            assert!(
                found,
                "{tool} is not installed: install Debian's `pebble` package (bash .ci/run does)"
            );
        }
        let dir = tempfile::tempdir().expect("pebble tempdir");
        let (https_ca_pem, files) = certificate(dir.path(), "pebble", &["127.0.0.1", "localhost"]);
        let https_ca = dir.path().join("pebble-ca.pem");
        std::fs::write(&https_ca, &https_ca_pem).expect("write pebble's CA");
        let (dns, dns_management, listen, management) =
            (free_port(), free_port(), free_port(), free_port());
        let log = |name: &str| {
            let file = std::fs::File::create(dir.path().join(name)).expect("pebble log");
            (file.try_clone().expect("dup"), file)
        };
        let (out, err) = log("challtestsrv.log");
        let dns_server = Command::new("pebble-challtestsrv")
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-management", &format!("127.0.0.1:{dns_management}")])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start pebble-challtestsrv");
        let mut children = vec![dns_server];
        wait_for_port(dns_management);
        let mut settings = serde_json::json!({
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": files.cert,
            "privateKey": files.key,
            "httpPort": options.http_port,
            "tlsPort": options.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        });
        if let Some(validity) = options.validity {
            settings["certificateValidityPeriod"] = validity.as_secs().into();
        }
        let config = dir.path().join("pebble.json");
        let json = serde_json::json!({ "pebble": settings }).to_string();
        std::fs::write(&config, json).expect("write pebble.json");
        let (out, err) = log("pebble.log");
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(&config)
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            // No artificial validation delay; no nonces refused at random; every order
            // validated anew, renewals too.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start pebble");
        children.push(pebble);
        wait_for_port(listen);
        wait_for_port(management);
        Pebble {
            directory: format!("https://127.0.0.1:{listen}/dir"),
            https_ca,
            management,
            https_ca_pem,
            children,
            _dir: dir,
        }
    }

    /// The root of the chains pebble issues (it makes a new one at every start).
    pub fn issuing_root(&self) -> String {
        let client = reqwest::blocking::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.https_ca_pem.as_bytes()).expect("CA"),
            )
            .build()
            .expect("client");
        let url = format!("https://127.0.0.1:{}/roots/0", self.management);
        client
            .get(url)
            .send()
            .and_then(|r| r.error_for_status())
            .and_then(|r| r.text())
            .expect("pebble's root")
    }

    /// Stops pebble: orders placed from now on fail.
    pub fn stop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
    }
}
