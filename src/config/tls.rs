//! TLS certificates for the listeners: read from PEM files when the config is compiled, so a
//! missing file, an unreadable key or a key that does not match its certificate is a located
//! config error (and a reload, which compiles the config anew, re-reads them); then chosen per
//! connection by SNI.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::acme::Acme;
use arc_swap::ArcSwap;

/// A listener's certificates: the default, then the `sni:` ones; or, with `acme:`, the one its
/// CA issued, swapped for the renewed one while the listener runs.
#[derive(Debug)]
pub struct Certificates {
    /// Read at every handshake; a renewal stores a new list, and handshakes under way keep the
    /// one they loaded, so none fails for it.
    all: ArcSwap<Vec<Arc<CertifiedKey>>>,
    /// Where the certificate comes from when it is not a file.
    pub acme: Option<Acme>,
}

impl Certificates {
    pub fn new(default: CertifiedKey, more: Vec<CertifiedKey>) -> Certificates {
        let mut all = vec![Arc::new(default)];
        all.extend(more.into_iter().map(Arc::new));
        Certificates {
            all: ArcSwap::from_pointee(all),
            acme: None,
        }
    }

    /// A listener whose certificate an ACME CA issues: `stored` until it is renewed, or none
    /// (handshakes fail) until the first is issued.
    pub fn from_acme(acme: Acme, stored: Option<Arc<CertifiedKey>>) -> Certificates {
        Certificates {
            all: ArcSwap::from_pointee(stored.into_iter().collect()),
            acme: Some(acme),
        }
    }

    /// Serves `key` from the next handshake on.
    pub fn replace(&self, key: Arc<CertifiedKey>) {
        self.all.store(Arc::new(vec![key]));
    }

    /// Whether there is a certificate to serve.
    pub fn is_empty(&self) -> bool {
        self.all.load().is_empty()
    }

    /// The certificate for a client that asked for `name`: the first whose names cover it
    /// (wildcards included, as a client would check), else the default.
    pub fn for_name(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let all = self.all.load();
        // One certificate is the answer whatever the name: no certificate parsed per handshake.
        if all.len() == 1 {
            return all.first().cloned();
        }
        let wanted = name.and_then(|n| ServerName::try_from(n).ok());
        let chosen = wanted.and_then(|name| all.iter().find(|key| valid_for(key, &name)));
        chosen.or(all.first()).cloned()
    }
}

/// What `check` says of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// Its DNS names (subject alternative names), else its subject.
    pub names: Vec<String>,
    pub issuer: String,
    pub not_after: std::time::SystemTime,
}

impl Certificates {
    /// Each certificate's names, issuer and expiry, the default first.
    pub fn describe(&self) -> Vec<Described> {
        self.all
            .load()
            .iter()
            .filter_map(|key| describe(key.end_entity_cert().ok()?))
            .collect()
    }
}

fn describe(der: &CertificateDer<'_>) -> Option<Described> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let mut names = super::x509::dns_names(&cert);
    if names.is_empty() {
        names.push(cert.subject().to_string());
    }
    let seconds = u64::try_from(cert.validity().not_after.timestamp()).unwrap_or(0);
    Some(Described {
        names,
        issuer: cert.issuer().to_string(),
        not_after: std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds),
    })
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.for_name(hello.server_name())
    }
}

fn valid_for(key: &CertifiedKey, name: &ServerName<'_>) -> bool {
    key.end_entity_cert()
        .ok()
        .and_then(|cert| webpki::EndEntityCert::try_from(cert).ok())
        .is_some_and(|cert| cert.verify_is_valid_for_subject_name(name).is_ok())
}

/// Why a certificate and key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot read certificates from {}: {error}", path.display())]
    Cert {
        path: std::path::PathBuf,
        error: String,
    },
    #[error("{} holds no certificate", .0.display())]
    NoCert(std::path::PathBuf),
    #[error("cannot read a private key from {}: {error}", path.display())]
    Key {
        path: std::path::PathBuf,
        error: String,
    },
    #[error("the key in {} cannot be used with the certificate in {}: {error}", key.display(), cert.display())]
    Mismatch {
        cert: std::path::PathBuf,
        key: std::path::PathBuf,
        error: String,
    },
}

/// Loads a PEM certificate chain and its private key, and checks that they belong together.
pub fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, CertError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| CertError::Cert {
            path: cert.to_owned(),
            error: pem_error(&e),
        })?;
    if chain.is_empty() {
        return Err(CertError::NoCert(cert.to_owned()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| CertError::Key {
        path: key.to_owned(),
        error: pem_error(&e),
    })?;
    // The same provider Pingora's listeners use (ring).
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, private, &provider).map_err(|e| CertError::Mismatch {
        cert: cert.to_owned(),
        key: key.to_owned(),
        error: e.to_string(),
    })
}

pub fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM section of that kind".to_owned(),
        other => format!("{other:?}"),
    }
}
