//! What spillway reads from an X.509 certificate besides what rustls checks: the names it is
//! for (for `check`, and to tell whether a stored ACME certificate covers the configured names).

/// A certificate's DNS names (its subject alternative names; IP addresses and others left out).
pub fn dns_names(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some((*dns).to_owned()),
            _ => None,
        })
        .collect()
}
