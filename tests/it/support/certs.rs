//! TLS certificates, made in the test.

use super::*;

/// A certificate authority and a server certificate it signed for `names`, written to
/// `<dir>/<stem>.pem` and `<dir>/<stem>.key`. Returns the CA's PEM (to trust) and the files.
pub fn certificate(dir: &Path, stem: &str, names: &[&str]) -> (String, TlsFiles) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("spillway test CA {stem}"),
    );
    let ca = ca.self_signed(&ca_key).expect("CA certificate");
    let key = KeyPair::generate().expect("server key");
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = CertificateParams::new(names)
        .expect("server params")
        .signed_by(&key, &ca, &ca_key)
        .expect("server certificate");
    let cert_path = dir.join(format!("{stem}.pem"));
    let key_path = dir.join(format!("{stem}.key"));
    std::fs::write(&cert_path, cert.pem()).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    (
        ca.pem(),
        TlsFiles {
            cert: cert_path,
            key: key_path,
            sni: Vec::new(),
        },
    )
}
