//! Certificates from an ACME CA (RFC 8555), as the config names them: the settings of a
//! listener's `tls: {acme: …}`, the files its certificates and account are kept in, and the
//! answers to the CA's challenges while an order is open. The orders themselves are placed by
//! the server (`server/acme.rs`); this part holds no network code, so `check` and a reload read
//! the same stored certificate the running server would.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// Let's Encrypt's production directory, the default `directory:`.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// Where a CA asks for the HTTP-01 answer (RFC 8555 §8.3).
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// The ALPN protocol of a TLS-ALPN-01 validation (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// One listener's `acme:` settings, checked.
#[derive(Debug, Clone)]
pub struct Acme {
    /// The names the certificate covers; the first names its file.
    pub domains: Vec<String>,
    /// `mailto:` addresses the CA may write to about the account.
    pub contact: Vec<String>,
    pub directory: String,
    /// The account key, the certificates and open HTTP-01 answers; shared by a reload's two
    /// processes and by replicas.
    pub state_dir: PathBuf,
    pub challenge: ChallengeKind,
    /// Trust for the ACME server's own HTTPS certificate, when it is a private CA.
    pub directory_ca: Option<PathBuf>,
    /// Where the answers to open challenges wait for the CA (one table per process).
    pub challenges: Arc<Challenges>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    /// A GET to `http://NAME/.well-known/acme-challenge/TOKEN` on port 80.
    Http01,
    /// A TLS handshake to NAME:443 offering only ALPN `acme-tls/1`.
    TlsAlpn01,
}

impl ChallengeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeKind::Http01 => "http-01",
            ChallengeKind::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

impl Acme {
    /// The file holding the certificate chain and its key (PEM, mode 0600), one per CA: a
    /// move from a staging directory to production never serves the staging certificate.
    pub fn certificate_file(&self) -> PathBuf {
        let ca = self.directory_tag();
        self.state_dir.join(format!("{}.{ca}.pem", self.domains[0]))
    }

    /// Where the process placing an HTTP-01 order leaves its open answers, one file per token,
    /// so whichever process sharing `state_dir` the CA reaches answers it (replicas behind one
    /// load balancer).
    pub fn http01_dir(&self) -> PathBuf {
        self.state_dir.join("http-01")
    }

    /// The file holding the account key for this directory (one account per CA).
    pub fn account_file(&self) -> PathBuf {
        let ca = self.directory_tag();
        self.state_dir.join(format!("account-{ca}.json"))
    }

    /// A short name for the CA: twelve hex digits of its directory URL's SHA-256.
    fn directory_tag(&self) -> String {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(self.directory.as_bytes());
        hex::encode(&digest[..6])
    }

    /// The certificate in the state directory, when it is usable for these domains now.
    pub fn stored(&self, now: SystemTime) -> Result<Issued, String> {
        let path = self.certificate_file();
        let pem = match std::fs::read(&path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!("no certificate in {} yet", path.display()))
            }
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let issued = Issued::from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some(missing) = self.domains.iter().find(|d| !issued.names.contains(d)) {
            return Err(format!(
                "the certificate in {} does not cover {missing}",
                path.display()
            ));
        }
        if issued.not_after <= now {
            return Err(format!("the certificate in {} has expired", path.display()));
        }
        Ok(issued)
    }
}

/// A certificate an ACME CA issued: its chain and key as rustls uses them, and its lifetime.
#[derive(Debug, Clone)]
pub struct Issued {
    pub key: Arc<CertifiedKey>,
    pub names: Vec<String>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Issued {
    /// Reads a chain and its private key from one PEM text (as stored, and as the CA sends
    /// the chain with the key spillway made appended).
    pub fn from_pem(pem: &[u8]) -> Result<Issued, String> {
        let chain = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("unreadable certificate: {e:?}"))?;
        let Some(leaf) = chain.first() else {
            return Err("holds no certificate".to_owned());
        };
        let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
            .map_err(|e| format!("unreadable certificate: {e}"))?;
        let names = super::x509::dns_names(&cert);
        let at = |t: x509_parser::time::ASN1Time| {
            SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(t.timestamp()).unwrap_or(0))
        };
        let (not_before, not_after) = (
            at(cert.validity().not_before),
            at(cert.validity().not_after),
        );
        let private = PrivateKeyDer::from_pem_slice(pem)
            .map_err(|e| format!("no private key beside the certificate: {e:?}"))?;
        let provider = rustls::crypto::ring::default_provider();
        let key = CertifiedKey::from_der(chain, private, &provider)
            .map_err(|e| format!("the key does not fit the certificate: {e}"))?;
        Ok(Issued {
            key: Arc::new(key),
            names,
            not_before,
            not_after,
        })
    }

    /// When to renew: two thirds into the certificate's life, as Let's Encrypt advises.
    pub fn renew_at(&self) -> SystemTime {
        let life = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or_default();
        self.not_before + life * 2 / 3
    }
}

/// The longest HTTP-01 token answered (CAs use 43 characters: 256 bits in base64url).
const LONGEST_TOKEN: usize = 256;

/// A key authorization is the token, a dot, and the account key's SHA-256 thumbprint in
/// base64url (RFC 8555 §8.1): 43 characters.
const THUMBPRINT_LEN: usize = 43;

/// A whole order gives up after this; an answer file older than that is a dead process's.
pub const ORDER_TIMEOUT: Duration = Duration::from_secs(300);

/// The answers to the challenges of open orders, by token (HTTP-01) and by name (TLS-ALPN-01).
/// This process's own answers are there only while one of its orders is being validated.
#[derive(Debug, Default)]
pub struct Challenges {
    http: RwLock<HashMap<String, Arc<str>>>,
    alpn: RwLock<HashMap<String, Arc<CertifiedKey>>>,
    /// How many TLS-ALPN-01 answers wait (the table's size, kept where a handshake reads it
    /// without a lock): while none does, a TLS handshake is not looked at.
    alpn_open: AtomicUsize,
}

impl Challenges {
    /// The token an HTTP-01 request `path` asks for, when it is shaped like one (RFC 8555
    /// §8.3: base64url characters only, so it is also a plain file name).
    pub fn http01_token(path: &str) -> Option<&str> {
        let token = path.strip_prefix(HTTP01_PREFIX)?;
        Self::is_token(token).then_some(token)
    }

    /// Whether `token` is shaped like an HTTP-01 token.
    pub fn is_token(token: &str) -> bool {
        (1..=LONGEST_TOKEN).contains(&token.len())
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    /// The key authorization for `token`, when this process opened its challenge.
    pub fn http01(&self, token: &str) -> Option<Arc<str>> {
        let open = self.http.read().unwrap_or_else(|e| e.into_inner());
        open.get(token).cloned()
    }

    /// Whether a TLS-ALPN-01 validation may be under way.
    pub fn expects_tls_alpn01(&self) -> bool {
        self.alpn_open.load(Ordering::Acquire) > 0
    }

    /// The answer certificate for a TLS-ALPN-01 validation of `name`.
    pub fn tls_alpn01(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let open = self.alpn.read().unwrap_or_else(|e| e.into_inner());
        open.get(&name.to_ascii_lowercase()).cloned()
    }

    /// Answers `token` with `key_authorization` until the returned guard is dropped.
    pub fn open_http01(&self, token: &str, key_authorization: &str) -> Open<'_> {
        let mut open = self.http.write().unwrap_or_else(|e| e.into_inner());
        open.insert(token.to_owned(), Arc::from(key_authorization));
        Open {
            challenges: self,
            which: Which::Http(token.to_owned()),
        }
    }

    /// Answers a TLS-ALPN-01 handshake for `name` with `answer` until the guard is dropped
    /// (a later answer for the same name replaces it; each guard withdraws its own only).
    pub fn open_tls_alpn01(&self, name: &str, answer: CertifiedKey) -> Open<'_> {
        let answer = Arc::new(answer);
        let mut open = self.alpn.write().unwrap_or_else(|e| e.into_inner());
        open.insert(name.to_ascii_lowercase(), Arc::clone(&answer));
        self.alpn_open.store(open.len(), Ordering::Release);
        Open {
            challenges: self,
            which: Which::Alpn(name.to_ascii_lowercase(), answer),
        }
    }
}

/// The key authorization another process left for `token` (a `Challenges::http01_token`) in
/// one of `dirs` (`Acme::http01_dir`s), when it is there, fresh, and the token's. Reads files:
/// call it where blocking is allowed. An error is a file that is there but cannot be read.
pub fn shared_http01(dirs: &[PathBuf], token: &str) -> Result<Option<Arc<str>>, String> {
    for dir in dirs {
        let path = dir.join(token);
        match read_answer(&path, token) {
            Ok(None) => continue,
            Ok(found) => return Ok(found),
            Err(e) => {
                return Err(format!(
                    "cannot read the HTTP-01 answer {}: {e}; every process sharing {} must run \
                     as the user that owns it",
                    path.display(),
                    dir.parent().unwrap_or(dir).display()
                ))
            }
        }
    }
    Ok(None)
}

/// The answer for `token` in the file at `path`: a regular file (not followed through a link,
/// never blocking on a pipe), written less than an order's life ago, holding exactly the
/// token's key authorization.
fn read_answer(path: &Path, token: &str) -> std::io::Result<Option<Arc<str>>> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // A link (ELOOP) is not an answer spillway wrote.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    let fresh = meta
        .modified()
        .ok()
        .and_then(|at| at.elapsed().ok())
        .is_some_and(|age| age < ORDER_TIMEOUT);
    if !meta.is_file() || !fresh {
        return Ok(None);
    }
    let mut answer = String::new();
    let longest = token.len() + 1 + THUMBPRINT_LEN;
    file.take(longest as u64 + 1).read_to_string(&mut answer)?;
    let thumbprint = answer.strip_prefix(token).and_then(|r| r.strip_prefix('.'));
    let whole = thumbprint.is_some_and(|t| t.len() == THUMBPRINT_LEN && Challenges::is_token(t));
    Ok(whole.then(|| Arc::from(answer)))
}

/// An open challenge's answer; dropping it withdraws the answer.
#[must_use = "the answer is withdrawn when this is dropped"]
pub struct Open<'a> {
    challenges: &'a Challenges,
    which: Which,
}

enum Which {
    Http(String),
    Alpn(String, Arc<CertifiedKey>),
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        match &self.which {
            Which::Http(token) => {
                let mut open = self
                    .challenges
                    .http
                    .write()
                    .unwrap_or_else(|e| e.into_inner());
                open.remove(token);
            }
            Which::Alpn(name, answer) => {
                let mut open = self
                    .challenges
                    .alpn
                    .write()
                    .unwrap_or_else(|e| e.into_inner());
                if open.get(name).is_some_and(|kept| Arc::ptr_eq(kept, answer)) {
                    open.remove(name);
                }
                self.challenges
                    .alpn_open
                    .store(open.len(), Ordering::Release);
            }
        }
    }
}

/// Checks one `acme.domains` entry: a DNS name a CA can validate with HTTP-01 or TLS-ALPN-01.
pub fn check_domain(name: &str) -> Result<(), String> {
    if name.starts_with("*.") {
        return Err(format!(
            "{name:?} is a wildcard: a CA issues wildcards only after a DNS-01 challenge, which \
             spillway does not answer; list each name, or use `cert:` and `key:` for a wildcard \
             certificate made elsewhere"
        ));
    }
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!(
            "{name:?} is an IP address: list the DNS names the certificate is for"
        ));
    }
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.contains('.')
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    if !valid {
        return Err(format!(
            "{name:?} is not a DNS name a CA can issue for (lowercase letters, digits, `-` and \
             at least one dot, like files.example.com)"
        ));
    }
    Ok(())
}

/// Whether `dir` exists as something other than a directory (a mistake `check` can name).
pub fn not_a_directory(dir: &Path) -> bool {
    dir.exists() && !dir.is_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_a_ca_can_validate_pass_and_others_are_named() {
        assert!(check_domain("files.example.com").is_ok());
        assert!(check_domain("a-1.example.co.uk").is_ok());
        for bad in [
            "*.example.com",
            "127.0.0.1",
            "localhost",
            "Files.example.com",
            "-a.example.com",
            "a..b",
        ] {
            let e = check_domain(bad).expect_err(bad);
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn an_answer_is_given_while_its_challenge_is_open_only() {
        let challenges = Challenges::default();
        assert_eq!(challenges.http01("tok"), None);
        {
            let _open = challenges.open_http01("tok", "tok.thumb");
            assert_eq!(challenges.http01("tok").as_deref(), Some("tok.thumb"));
            assert_eq!(challenges.http01("other"), None);
        }
        assert_eq!(challenges.http01("tok"), None);
    }

    #[test]
    fn only_token_shaped_paths_are_looked_up() {
        let token = |path| Challenges::http01_token(path);
        assert_eq!(token("/.well-known/acme-challenge/aB-_9"), Some("aB-_9"));
        let long = format!("{HTTP01_PREFIX}{}", "a".repeat(LONGEST_TOKEN + 1));
        for not in [
            "/tok",
            "/.well-known/acme-challenge/",
            "/.well-known/acme-challenge/../state",
            "/.well-known/acme-challenge/a.tmp.12",
            "/.well-known/acme-challenge/a/b",
            "/.well-known/acme-challenge/a%2Fb",
            long.as_str(),
        ] {
            assert_eq!(token(not), None, "{not}");
        }
    }

    #[test]
    fn answers_left_by_another_process_are_given_when_they_are_the_token_s() {
        let dir = tempfile::tempdir().expect("dir");
        let thumbprint = "T".repeat(THUMBPRINT_LEN);
        let write = |name: &str, text: String| {
            std::fs::write(dir.path().join(name), text).expect("write");
        };
        write("tok", format!("tok.{thumbprint}"));
        write("odd", format!("other.{thumbprint}"));
        write("long", format!("long.{thumbprint}X"));
        write("short", "short.abc".to_owned());
        std::os::unix::fs::symlink(dir.path().join("tok"), dir.path().join("link")).expect("ln");
        let dirs = [dir.path().to_owned()];
        let shared = |token: &str| shared_http01(&dirs, token).expect("readable");
        assert_eq!(shared_http01(&[], "tok"), Ok(None), "no directory");
        let expected = format!("tok.{thumbprint}");
        assert_eq!(shared("tok").as_deref(), Some(expected.as_str()));
        for not in ["odd", "long", "short", "link", "none"] {
            assert_eq!(shared(not), None, "{not}");
        }
        // A dead process's answer, older than any order lives.
        let old = std::time::SystemTime::now() - ORDER_TIMEOUT - Duration::from_secs(1);
        let file = std::fs::File::options()
            .write(true)
            .open(dir.path().join("tok"))
            .expect("open");
        file.set_modified(old).expect("set mtime");
        assert_eq!(shared("tok"), None, "stale");
    }

    #[test]
    fn renewal_is_two_thirds_into_the_life() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let issued = Issued {
            key: Arc::new(CertifiedKey::new(
                Vec::new(),
                rustls::crypto::ring::sign::any_supported_type(&PrivateKeyDer::from(
                    rustls::pki_types::PrivatePkcs8KeyDer::from(
                        rcgen::KeyPair::generate().expect("key").serialize_der(),
                    ),
                ))
                .expect("a key"),
            )),
            names: vec![],
            not_before: start,
            not_after: start + Duration::from_secs(90),
        };
        assert_eq!(issued.renew_at(), start + Duration::from_secs(60));
    }
}
