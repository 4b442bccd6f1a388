//! RSA PKCS#1 v1.5 signatures over SHA-1, the one algorithm CloudFront takes from RSA keys.
//! No safe Rust API signs it: ring and aws-lc-rs verify SHA-1 signatures but only sign with
//! SHA-2, and the `rsa` crate's private-key operation has a timing side channel
//! (RUSTSEC-2023-0071). So this calls AWS-LC (already linked for rustls and the AWS SDK)
//! directly: `RSA_sign`, constant-time and blinded, on a key it parsed itself. All the unsafe
//! code of CloudFront signing is in this file.

use std::ffi::c_uint;
use std::ptr::NonNull;

use aws_lc_sys as lc;

/// An RSA private key that signs SHA-1 digests.
pub struct RsaSha1Key {
    /// Owned: freed on drop.
    rsa: OwnedRsa,
    bits: usize,
}

struct OwnedRsa(NonNull<lc::RSA>);

// SAFETY: AWS-LC keys are not tied to the thread that made them, and its rsa.h says of
// `RSA_sign` (the only use after parsing): "These functions are considered non-mutating for
// thread-safety purposes and may be used concurrently."
unsafe impl Send for OwnedRsa {}
unsafe impl Sync for OwnedRsa {}

impl Drop for OwnedRsa {
    fn drop(&mut self) {
        // SAFETY: the pointer came from AWS-LC with one reference, which this owns.
        unsafe { lc::RSA_free(self.0.as_ptr()) }
    }
}

impl std::fmt::Debug for RsaSha1Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RsaSha1Key({} bits)", self.bits)
    }
}

impl RsaSha1Key {
    /// Parses a PKCS#1 `RSAPrivateKey` or an unencrypted PKCS#8 `PrivateKeyInfo` holding one,
    /// and checks the key's consistency. `None` when it is neither, or not a sound RSA key.
    pub fn from_der(der: &[u8]) -> Option<RsaSha1Key> {
        let rsa = parse_pkcs1(der).or_else(|| parse_pkcs8(der));
        // SAFETY: a failed parse leaves reasons on this thread's queue; they are not ours to keep.
        unsafe { lc::ERR_clear_error() };
        let rsa = rsa?;
        // SAFETY: `rsa` is a valid key owned by `rsa`.
        let sound = unsafe { lc::RSA_check_key(rsa.0.as_ptr()) } == 1;
        if !sound {
            return None;
        }
        // SAFETY: as above.
        let bits = unsafe { lc::RSA_bits(rsa.0.as_ptr()) } as usize;
        Some(RsaSha1Key { rsa, bits })
    }

    /// The modulus size.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// The signature of `message`: PKCS#1 v1.5 over its SHA-1 digest; else AWS-LC's reason.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let digest =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, message);
        let digest = digest.as_ref();
        let rsa = self.rsa.0.as_ptr();
        // SAFETY: the key is valid while `self` lives.
        let size = unsafe { lc::RSA_size(rsa) } as usize;
        let mut signature = vec![0u8; size];
        let mut written: c_uint = 0;
        // SAFETY: clears this thread's error queue, so a failure below reads its own reason.
        unsafe { lc::ERR_clear_error() };
        // SAFETY: `signature` has RSA_size bytes, as RSA_sign requires; `digest` is 20 bytes
        // of SHA-1; the key is valid, and signing may run on several threads at once.
        let ok = unsafe {
            lc::RSA_sign(
                lc::NID_sha1,
                digest.as_ptr(),
                digest.len(),
                signature.as_mut_ptr(),
                &mut written,
                rsa,
            )
        };
        if ok != 1 {
            return Err(last_error());
        }
        signature.truncate(written as usize);
        Ok(signature)
    }
}

/// AWS-LC's reason for the last failure on this thread.
fn last_error() -> String {
    // SAFETY: reads and removes the thread's oldest queued error (0 if none).
    let code = unsafe { lc::ERR_get_error() };
    if code == 0 {
        return "AWS-LC gave no reason".to_owned();
    }
    let mut text = [0u8; 256];
    // SAFETY: AWS-LC writes at most `text.len()` bytes, NUL-terminated, into `text`.
    unsafe { lc::ERR_error_string_n(code, text.as_mut_ptr().cast(), text.len()) };
    let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
    String::from_utf8_lossy(&text[..end]).into_owned()
}

fn parse_pkcs1(der: &[u8]) -> Option<OwnedRsa> {
    // SAFETY: AWS-LC reads `der.len()` bytes from `der` and returns a new key or null.
    let rsa = unsafe { lc::RSA_private_key_from_bytes(der.as_ptr(), der.len()) };
    NonNull::new(rsa).map(OwnedRsa)
}

fn parse_pkcs8(der: &[u8]) -> Option<OwnedRsa> {
    let mut cbs = lc::CBS {
        data: der.as_ptr(),
        len: der.len(),
    };
    // SAFETY: `cbs` borrows `der`, which outlives the call; the result is a new key or null.
    let pkey = NonNull::new(unsafe { lc::EVP_parse_private_key(&mut cbs) })?;
    // SAFETY: `pkey` is valid; get1 returns a new reference (or null for a non-RSA key), so
    // freeing `pkey` afterwards leaves the RSA key alive.
    let rsa = unsafe {
        let rsa = if lc::EVP_PKEY_id(pkey.as_ptr()) == lc::EVP_PKEY_RSA {
            lc::EVP_PKEY_get1_RSA(pkey.as_ptr())
        } else {
            std::ptr::null_mut()
        };
        lc::EVP_PKEY_free(pkey.as_ptr());
        rsa
    };
    NonNull::new(rsa).map(OwnedRsa)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2048-bit key made once for these tests (PKCS#8), and its PKCS#1 form.
    fn key_pair() -> (Vec<u8>, aws_lc_rs::signature::RsaKeyPair) {
        use aws_lc_rs::encoding::AsDer;
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .expect("an RSA key");
        let pkcs8 = pair.as_der().expect("PKCS#8").as_ref().to_vec();
        (pkcs8, pair)
    }

    #[test]
    fn signatures_verify_with_the_public_key_over_sha1() {
        use aws_lc_rs::signature::{KeyPair as _, UnparsedPublicKey};
        let (pkcs8, pair) = key_pair();
        let key = RsaSha1Key::from_der(&pkcs8).expect("PKCS#8 RSA");
        assert_eq!(key.bits(), 2048);
        let message = br#"{"Statement":[{"Resource":"https://d.example/a","Condition":{"DateLessThan":{"AWS:EpochTime":1}}}]}"#;
        let signature = key.sign(message).expect("a signature");
        let public = UnparsedPublicKey::new(
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            pair.public_key().as_ref(),
        );
        assert!(public.verify(message, &signature).is_ok());
        assert!(public.verify(b"another message", &signature).is_err());
        // PKCS#1 v1.5 is deterministic: the same message, the same signature.
        assert_eq!(key.sign(message), Ok(signature));
    }

    #[test]
    fn what_is_not_an_rsa_key_is_refused() {
        assert!(RsaSha1Key::from_der(b"not a key").is_none());
        let ec = aws_lc_rs::signature::EcdsaKeyPair::generate(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        )
        .expect("an EC key");
        use aws_lc_rs::encoding::AsDer;
        let der = ec.private_key().as_der().expect("DER");
        assert!(RsaSha1Key::from_der(der.as_ref()).is_none());
    }
}
