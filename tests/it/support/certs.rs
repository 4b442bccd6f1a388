//! TLS certificates, made in the test.

use super::*;

/// A certificate authority and a server certificate it signed for `names`, written to
/// `<dir>/<stem>.pem` and `<dir>/<stem>.key`. Returns the CA's PEM (to trust) and the files.
pub fn certificate(dir: &Path, stem: &str, names: &[&str]) -> (String, TlsFiles) {
    make_certificate(dir, stem, names, None)
}

/// [`certificate`], valid until midnight (UTC) `days` days from today.
pub fn certificate_expiring(
    dir: &Path,
    stem: &str,
    names: &[&str],
    days: u64,
) -> (String, TlsFiles) {
    let then = std::time::SystemTime::now() + Duration::from_secs(days * 24 * 3600);
    // `2026-12-11T...`: the date, without calendar arithmetic here.
    let date = humantime::format_rfc3339_seconds(then).to_string();
    let part = |range: std::ops::Range<usize>| date[range].parse::<i32>().expect("a date");
    let not_after = (part(0..4), part(5..7) as u8, part(8..10) as u8);
    make_certificate(dir, stem, names, Some(not_after))
}

fn make_certificate(
    dir: &Path,
    stem: &str,
    names: &[&str],
    not_after: Option<(i32, u8, u8)>,
) -> (String, TlsFiles) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("spillway test CA {stem}"),
    );
    let ca = CertifiedIssuer::self_signed(ca, ca_key).expect("CA certificate");
    let key = KeyPair::generate().expect("server key");
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).expect("server params");
    if let Some((year, month, day)) = not_after {
        params.not_after = rcgen::date_time_ymd(year, month, day);
    }
    let cert = params.signed_by(&key, &ca).expect("server certificate");
    let cert_path = dir.join(format!("{stem}.pem"));
    let key_path = dir.join(format!("{stem}.key"));
    std::fs::write(&cert_path, cert.pem()).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    (
        ca.as_ref().pem(),
        TlsFiles {
            cert: cert_path,
            key: key_path,
            sni: Vec::new(),
        },
    )
}
