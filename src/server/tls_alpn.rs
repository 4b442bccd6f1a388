//! TLS-ALPN-01 validations (RFC 8737), answered before Pingora's own handshake. The CA
//! connects offering only ALPN `acme-tls/1` and expects a self-signed certificate carrying
//! the challenge's digest. Pingora's listeners offer a fixed ALPN list (h2, http/1.1), and
//! rustls refuses a client none of whose protocols are on it, so the resolver alone cannot
//! answer: this hook reads the ClientHello, answers a validation with a handshake of its own,
//! and hands every other connection on with the bytes it read put back. While no validation
//! is open it does nothing at all.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::listeners::PreTlsProcess;
use pingora::protocols::l4::stream::Stream as L4Stream;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::acme::{Challenges, ACME_TLS_ALPN};

/// A ClientHello larger than this is not a CA's (theirs are small): pass it on.
const LONGEST_HELLO: usize = 16 * 1024;

/// How long a client may take to send its ClientHello while a validation is open.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

pub struct TlsAlpn01 {
    pub challenges: Arc<Challenges>,
}

#[async_trait]
impl PreTlsProcess for TlsAlpn01 {
    async fn process(&self, stream: &mut L4Stream) -> pingora::Result<()> {
        if !self.challenges.expects_tls_alpn01() {
            return Ok(());
        }
        let mut read = Vec::new();
        let answer = tokio::time::timeout(HELLO_TIMEOUT, self.read_hello(stream, &mut read))
            .await
            .ok()
            .flatten();
        // Whatever happens next, the handshake starts from the first byte.
        stream.rewind(&read);
        let Some(answer) = answer else {
            return Ok(());
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| {
                b.with_no_client_auth()
                    .with_cert_resolver(Arc::new(Answer(answer)))
            });
        if let Ok(mut config) = config {
            config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
            if let Ok(Ok(mut tls)) =
                tokio::time::timeout(HELLO_TIMEOUT, acceptor.accept(&mut *stream)).await
            {
                let _ = tls.shutdown().await;
            }
        }
        // The validation needs nothing more of this connection.
        Err(pingora::Error::explain(
            pingora::ErrorType::ConnectionClosed,
            "answered an ACME TLS-ALPN-01 validation on this connection (not a fault)",
        ))
    }
}

impl TlsAlpn01 {
    /// Reads until a whole ClientHello is in `read`; returns the answer certificate when it
    /// is a TLS-ALPN-01 validation of a name with an open challenge.
    async fn read_hello(
        &self,
        stream: &mut L4Stream,
        read: &mut Vec<u8>,
    ) -> Option<Arc<CertifiedKey>> {
        let mut acceptor = rustls::server::Acceptor::default();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            read.extend_from_slice(&chunk[..n]);
            let mut fresh = &chunk[..n];
            while !fresh.is_empty() {
                acceptor.read_tls(&mut fresh).ok()?;
            }
            match acceptor.accept() {
                Ok(Some(accepted)) => {
                    let hello = accepted.client_hello();
                    let validation = hello
                        .alpn()
                        .is_some_and(|mut offered| offered.any(|p| p == ACME_TLS_ALPN));
                    if !validation {
                        return None;
                    }
                    return self.challenges.tls_alpn01(hello.server_name()?);
                }
                Ok(None) if read.len() < LONGEST_HELLO => continue,
                _ => return None,
            }
        }
    }
}

/// Serves the one answer certificate.
#[derive(Debug)]
struct Answer(Arc<CertifiedKey>);

impl ResolvesServerCert for Answer {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}
