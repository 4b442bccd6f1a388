//! Certificates from an ACME CA, kept fresh while the server runs: ordered at start when the
//! state directory holds none for a listener, renewed two thirds into their life, and swapped
//! into the listener's certificate resolver, so no restart and no handshake is lost. A failed
//! order is retried with backoff and never takes away the certificate being served.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

use crate::config::acme::{Acme, ChallengeKind, Challenges, Issued, ORDER_TIMEOUT};
use crate::config::tls::Certificates;
use crate::telemetry::Telemetry;

/// The first retry after a failed order; each further failure doubles it, up to
/// [`LONGEST_RETRY`]. Slow enough for a public CA's failed-validation limit (5 an hour).
const FIRST_RETRY: Duration = Duration::from_secs(60);
const LONGEST_RETRY: Duration = Duration::from_secs(6 * 3600);

/// How long the CA may take to validate and to issue before the order counts as failed.
const ORDER_PATIENCE: Duration = Duration::from_secs(120);

// A whole order, account to stored certificate, gives up after `ORDER_TIMEOUT`: the ACME
// client's requests have no timeout of their own, and a CA that stops answering must not hold
// the state directory's lock (and the renewals) forever.

/// While another process holds the state directory's lock (a reload's successor, a replica
/// sharing the directory), look again this soon: it is most likely renewing the same names.
const LOCKED_RETRY: Duration = Duration::from_secs(5);

/// The background service keeping every `acme:` listener's certificate fresh.
pub struct AcmeCertificates {
    /// One entry per `acme:` block (listeners resolved from one address share it).
    pub listeners: Vec<Arc<Certificates>>,
    pub telemetry: Arc<Telemetry>,
}

/// Makes each `acme:` state directory, and for HTTP-01 its `http-01/` (mode 0700), before the
/// server starts, so a path it cannot write is a start error, not a failed renewal weeks later.
pub fn prepare_state_dirs(listeners: &[Arc<Certificates>]) -> Result<(), String> {
    for acme in listeners.iter().filter_map(|c| c.acme.as_ref()) {
        let dir = &acme.state_dir;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                format!(
                    "cannot make the ACME state directory {}: {e}",
                    dir.display()
                )
            })?;
        // Made now, so every process sharing the directory sees it before the first order.
        if acme.challenge == ChallengeKind::Http01 {
            let answers = acme.http01_dir();
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&answers)
                .map_err(|e| format!("cannot make {}: {e}", answers.display()))?;
        }
        let probe = dir.join(".spillway-write-test");
        std::fs::write(&probe, b"")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|e| {
                format!(
                    "cannot write in the ACME state directory {}: {e}; it keeps the account key, \
                     certificates and open HTTP-01 answers, so the user spillway runs as must own it",
                    dir.display()
                )
            })?;
    }
    Ok(())
}

#[async_trait]
impl BackgroundService for AcmeCertificates {
    async fn start(&self, shutdown: ShutdownWatch) {
        let all = self.listeners.iter().filter_map(|certificates| {
            let acme = certificates.acme.as_ref()?;
            Some(keep_fresh(
                certificates,
                acme,
                &self.telemetry,
                shutdown.clone(),
            ))
        });
        futures_util::future::join_all(all).await;
    }
}

/// Orders, renews and swaps in the certificate of one `acme:` block until shutdown.
async fn keep_fresh(
    certificates: &Certificates,
    acme: &Acme,
    telemetry: &Telemetry,
    mut shutdown: ShutdownWatch,
) {
    let name = acme.domains[0].as_str();
    let mut current = match acme.stored(SystemTime::now()) {
        Ok(issued) => {
            tracing::info!(
                "acme: certificate for {} from {}, valid until {}; renewing at {}",
                acme.domains.join(", "),
                acme.certificate_file().display(),
                shown(issued.not_after),
                shown(issued.renew_at()),
            );
            telemetry
                .metrics
                .certificate_expires(name, issued.not_after);
            Some(issued)
        }
        Err(why) => {
            tracing::info!(
                "acme: {why}: ordering a certificate for {} from {} ({}); TLS handshakes for \
                 these names fail until it is issued",
                acme.domains.join(", "),
                acme.directory,
                acme.challenge.as_str(),
            );
            None
        }
    };
    let mut failures = 0u32;
    let mut retry_at = SystemTime::UNIX_EPOCH;
    loop {
        let due = current
            .as_ref()
            .map_or(SystemTime::UNIX_EPOCH, Issued::renew_at)
            .max(retry_at);
        let wait = due.duration_since(SystemTime::now()).unwrap_or_default();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        // Another process may have renewed meanwhile: take its certificate if it is fresher.
        if let Ok(stored) = acme.stored(SystemTime::now()) {
            if stored.renew_at() > SystemTime::now() {
                install(certificates, telemetry, name, &stored);
                current = Some(stored);
                continue;
            }
        }
        let lock = match StateLock::try_take(&acme.state_dir) {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                retry_at = SystemTime::now() + LOCKED_RETRY;
                continue;
            }
            Err(e) => {
                let again = humantime::format_duration(FIRST_RETRY);
                tracing::error!("acme: {e}; trying again in {again}");
                retry_at = SystemTime::now() + FIRST_RETRY;
                continue;
            }
        };
        // The process that held the lock may have just stored a fresh certificate.
        if let Ok(stored) = acme.stored(SystemTime::now()) {
            if stored.renew_at() > SystemTime::now() {
                install(certificates, telemetry, name, &stored);
                current = Some(stored);
                continue;
            }
        }
        let ordered = tokio::select! {
            ordered = tokio::time::timeout(ORDER_TIMEOUT, order(acme)) => {
                ordered.unwrap_or_else(|_| Err(format!(
                    "the CA did not finish within {}",
                    humantime::format_duration(ORDER_TIMEOUT)
                )))
            }
            _ = shutdown.changed() => return,
        };
        drop(lock);
        match ordered {
            Ok(issued) => {
                failures = 0;
                telemetry.metrics.certificate_renewal(name, true);
                tracing::info!(
                    "acme: certificate for {} issued, valid until {}; renewing at {}",
                    acme.domains.join(", "),
                    shown(issued.not_after),
                    shown(issued.renew_at()),
                );
                install(certificates, telemetry, name, &issued);
                current = Some(issued);
            }
            Err(e) => {
                failures += 1;
                telemetry.metrics.certificate_renewal(name, false);
                let backoff = FIRST_RETRY
                    .saturating_mul(1 << (failures - 1).min(16))
                    .min(LONGEST_RETRY);
                retry_at = SystemTime::now() + backoff;
                let serving = match &current {
                    Some(issued) => format!(
                        "the current certificate stays, valid until {}",
                        shown(issued.not_after)
                    ),
                    None => "no certificate is served for these names until one is".to_owned(),
                };
                tracing::error!(
                    "acme: ordering a certificate for {} from {} failed: {e}; trying again in \
                     {} ({serving})",
                    acme.domains.join(", "),
                    acme.directory,
                    humantime::format_duration(backoff),
                );
            }
        }
    }
}

fn install(certificates: &Certificates, telemetry: &Telemetry, name: &str, issued: &Issued) {
    // Exported first, so a client served the certificate finds its expiry in the metrics.
    telemetry
        .metrics
        .certificate_expires(name, issued.not_after);
    certificates.replace(Arc::clone(&issued.key));
}

fn shown(at: SystemTime) -> humantime::Rfc3339Timestamp {
    humantime::format_rfc3339_seconds(at)
}

/// One order, from account to stored certificate. The error says which step failed.
async fn order(acme: &Acme) -> Result<Issued, String> {
    let account = account(acme).await?;
    let identifiers: Vec<Identifier> = acme
        .domains
        .iter()
        .map(|d| Identifier::Dns(d.clone()))
        .collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(|e| format!("the CA refused the order: {}", crate::error_chain(&e)))?;
    // The answers stay open until the order is decided, then are withdrawn (dropped).
    let mut open = Vec::new();
    let mut shared = Vec::new();
    if acme.challenge == ChallengeKind::Http01 {
        clear_leftover_answers(&acme.http01_dir());
    }
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization
            .map_err(|e| format!("cannot read an authorization: {}", crate::error_chain(&e)))?;
        let identifier = authorization.identifier().to_string();
        match authorization.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => {
                return Err(format!(
                    "the CA says the authorization for {identifier} is {other:?}"
                ))
            }
        }
        let kind = match acme.challenge {
            ChallengeKind::Http01 => ChallengeType::Http01,
            ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
        };
        let mut challenge = authorization.challenge(kind).ok_or_else(|| {
            format!(
                "the CA offers no {} challenge for {identifier}; choose another `challenge:`",
                acme.challenge.as_str()
            )
        })?;
        let key_authorization = challenge.key_authorization();
        open.push(match acme.challenge {
            ChallengeKind::Http01 => {
                let answer = key_authorization.as_str();
                shared.extend(SharedAnswer::leave(acme, &challenge.token, answer));
                acme.challenges.open_http01(&challenge.token, answer)
            }
            ChallengeKind::TlsAlpn01 => {
                let digest: [u8; 32] = key_authorization
                    .digest()
                    .as_ref()
                    .try_into()
                    .map_err(|_| "the key authorization's digest is not SHA-256".to_owned())?;
                let answer = tls_alpn01_answer(&identifier, &digest)?;
                acme.challenges.open_tls_alpn01(&identifier, answer)
            }
        });
        challenge.set_ready().await.map_err(|e| {
            let e = crate::error_chain(&e);
            format!("cannot tell the CA the challenge for {identifier} is ready: {e}")
        })?;
    }
    let patience = RetryPolicy::new().timeout(ORDER_PATIENCE);
    let status = order
        .poll_ready(&patience)
        .await
        .map_err(|e| format!("validation did not succeed: {}", crate::error_chain(&e)))?;
    if status != OrderStatus::Ready {
        return Err(why_invalid(&mut order).await);
    }
    let key_pem = order.finalize().await.map_err(|e| {
        format!(
            "the CA refused to finalize the order: {}",
            crate::error_chain(&e)
        )
    })?;
    let chain_pem = order.poll_certificate(&patience).await.map_err(|e| {
        format!(
            "the CA did not hand out the certificate: {}",
            crate::error_chain(&e)
        )
    })?;
    drop((open, shared));
    let pem = format!("{chain_pem}{key_pem}");
    let issued = Issued::from_pem(pem.as_bytes())
        .map_err(|e| format!("the CA's certificate cannot be used: {e}"))?;
    write_private(&acme.certificate_file(), pem.as_bytes())?;
    Ok(issued)
}

/// What the CA said about the challenge that failed, when an order became invalid.
async fn why_invalid(order: &mut instant_acme::Order) -> String {
    let mut authorizations = order.authorizations();
    while let Some(Ok(authorization)) = authorizations.next().await {
        for challenge in &authorization.challenges {
            if let Some(problem) = &challenge.error {
                return format!(
                    "the CA could not validate {}: {problem}",
                    authorization.identifier()
                );
            }
        }
    }
    "the CA declared the order invalid without saying why".to_owned()
}

/// The account for this directory: read from the state directory, or made and stored there.
/// spillway agrees to the CA's terms of service, as the operator who configured it does.
async fn account(acme: &Acme) -> Result<Account, String> {
    let unreachable = |e: instant_acme::Error| {
        let e = crate::error_chain(&e);
        format!(
            "cannot reach the ACME directory {}: {e}{}",
            acme.directory,
            trust_hint(&e)
        )
    };
    let builder = match &acme.directory_ca {
        Some(ca) => Account::builder_with_root(ca),
        None => Account::builder(),
    }
    .map_err(|e| format!("cannot set up the HTTPS client for the CA: {e}"))?;
    let file = acme.account_file();
    match std::fs::read(&file) {
        Ok(json) => {
            let credentials: AccountCredentials = serde_json::from_slice(&json)
                .map_err(|e| format!("{} is not an account file: {e}", file.display()))?;
            builder
                .from_credentials(credentials)
                .await
                .map_err(unreachable)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let contact: Vec<&str> = acme.contact.iter().map(String::as_str).collect();
            let new = NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            };
            let (account, credentials) = builder
                .create(&new, acme.directory.clone(), None)
                .await
                .map_err(|e| {
                let e = crate::error_chain(&e);
                let hint = trust_hint(&e);
                format!(
                    "cannot create an account with {}: {e}{hint}",
                    acme.directory
                )
            })?;
            let json = serde_json::to_vec_pretty(&credentials)
                .map_err(|e| format!("cannot store the account: {e}"))?;
            write_private(&file, &json)?;
            tracing::info!(
                "acme: account created with {}, stored in {}",
                acme.directory,
                file.display()
            );
            Ok(account)
        }
        Err(e) => Err(format!("cannot read {}: {e}", file.display())),
    }
}

/// What to do when the CA's own HTTPS certificate was not trusted.
fn trust_hint(error: &str) -> &'static str {
    match error.contains("invalid peer certificate") {
        true => {
            " (a private ACME server's HTTPS certificate needs its CA as `directory_ca:`: the \
                 CA certificate that signed it, not the server's certificate itself)"
        }
        false => "",
    }
}

/// The self-signed certificate a TLS-ALPN-01 validation expects (RFC 8737 §3): for `name`,
/// carrying the digest of the key authorization in the critical acmeIdentifier extension.
fn tls_alpn01_answer(name: &str, digest: &[u8; 32]) -> Result<CertifiedKey, String> {
    let failed =
        |e: rcgen::Error| format!("cannot make the TLS-ALPN-01 certificate for {name}: {e}");
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(failed)?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate().map_err(failed)?;
    let cert = params.self_signed(&key).map_err(failed)?;
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = rustls::crypto::ring::sign::any_supported_type(&private)
        .map_err(|e| format!("cannot use the TLS-ALPN-01 key for {name}: {e}"))?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signing))
}

/// Writes `bytes` to `path` readable by its owner only, whole or not at all (a reader sees
/// the old file or the new one).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let failed = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let temporary = path.with_extension(format!("tmp.{}", std::process::id()));
    // A leftover of a crashed process keeps its own mode: never write a key into it.
    match std::fs::remove_file(&temporary) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(failed(e)),
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(failed)?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&temporary);
            failed(e)
        })?;
    // The rename itself survives a crash once the directory is on disk.
    let directory = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(directory)
        .and_then(|d| d.sync_all())
        .map_err(failed)
}

/// An HTTP-01 answer left in the state directory for the processes sharing it, while the
/// order is open: the CA may reach any of them (replicas behind one load balancer).
struct SharedAnswer {
    path: PathBuf,
}

impl SharedAnswer {
    /// Leaves `answer` for `token`; when it cannot, this process alone answers, and says so.
    fn leave(acme: &Acme, token: &str, answer: &str) -> Option<SharedAnswer> {
        // The token comes from the CA: it names a file only when it is a token's shape (a
        // token of another shape is never asked for: see `Challenges::http01_token`).
        if !Challenges::is_token(token) {
            tracing::warn!(
                "acme: the CA's HTTP-01 token {token:?} is not base64url as RFC 8555 requires; \
                 it cannot be answered"
            );
            return None;
        }
        let dir = acme.http01_dir();
        let path = dir.join(token);
        let left = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("cannot make {}: {e}", dir.display()))
            .and_then(|()| write_private(&path, answer.as_bytes()));
        match left {
            Ok(()) => Some(SharedAnswer { path }),
            Err(e) => {
                tracing::warn!(
                    "acme: {e}; only this process answers the CA's HTTP-01 validation, so it \
                     fails if the CA reaches another one sharing {}",
                    acme.state_dir.display()
                );
                None
            }
        }
    }
}

impl Drop for SharedAnswer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Answers (and their temporary files) left by a process that died while its order was
/// open. Only the holder of the state directory's lock orders, so any answer there now is
/// such a leftover. Nothing else is touched, nor anything through a link.
fn clear_leftover_answers(dir: &Path) {
    let is_dir = std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir());
    let Some(entries) = is_dir.then(|| std::fs::read_dir(dir).ok()).flatten() else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let token = name.split_once(".tmp.").map_or(&*name, |(token, _)| token);
        if !Challenges::is_token(token) {
            continue;
        }
        if let Err(e) = std::fs::remove_file(entry.path()) {
            tracing::warn!(
                "acme: cannot remove a dead process's HTTP-01 answer {}: {e}",
                entry.path().display()
            );
        }
    }
}

/// An exclusive lock on the state directory while an order is placed, so two processes
/// sharing it (a reload's old and new process, replicas on one volume) never both order.
/// The lock lives as long as the file is open.
struct StateLock {
    _held: std::fs::File,
}

impl StateLock {
    /// The lock; `None` while another process holds it; an error when it cannot be taken.
    fn try_take(dir: &Path) -> Result<Option<StateLock>, String> {
        let path = dir.join(".lock");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("cannot open the lock file {}: {e}", path.display()))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(StateLock { _held: file })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(format!("cannot lock {}: {e}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_alpn01_answer_names_the_domain_and_carries_the_digest_critically() {
        let digest = [7u8; 32];
        let answer = tls_alpn01_answer("files.example.com", &digest).expect("an answer");
        let der = answer.end_entity_cert().expect("a certificate");
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).expect("parses");
        let acme_identifier = x509_parser::oid_registry::Oid::from(&[1, 3, 6, 1, 5, 5, 7, 1, 31])
            .expect("the acmeIdentifier OID");
        let extension = cert
            .extensions()
            .iter()
            .find(|e| e.oid == acme_identifier)
            .expect("the acmeIdentifier extension");
        assert!(extension.critical);
        // An OCTET STRING of the 32-byte digest.
        assert_eq!(extension.value, [&[0x04, 32][..], &digest].concat());
    }

    #[test]
    fn a_second_process_cannot_take_the_lock_while_the_first_holds_it() {
        let dir = tempfile::tempdir().expect("a directory");
        let first = StateLock::try_take(dir.path())
            .expect("openable")
            .expect("free");
        assert!(StateLock::try_take(dir.path()).expect("openable").is_none());
        drop(first);
        assert!(StateLock::try_take(dir.path()).expect("openable").is_some());
    }
}
