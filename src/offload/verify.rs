//! Whether the object in the bucket is the local file: only positive evidence counts.
//!
//! The lengths must match, and then a checksum the server computed must match the local one:
//! the full-object CRC64NVME when the server keeps it, otherwise the ETag when it is an MD5
//! (single part) or a multipart ETag computed from the same parts. A server that returns
//! neither proves nothing, and nothing is deleted on it (rclone counted a missing hash as a
//! match, rclone#7434).

use crate::offload::digest::{self, crc64_base64, Sums};
use crate::offload::transfer::Stored;

/// What is known of the local file's bytes.
#[derive(Debug, Clone)]
pub struct Local {
    pub len: u64,
    pub crc64: u64,
    /// The ETags S3 would give these bytes: the MD5 for a single upload, and/or the multipart
    /// ETag for the parts they were (or would be) uploaded in.
    pub etags: Vec<String>,
}

impl Local {
    /// Bytes uploaded (or to be uploaded) in one request.
    pub fn single(sums: &Sums) -> Local {
        Local {
            len: sums.len,
            crc64: sums.crc64,
            etags: vec![sums.etag()],
        }
    }

    /// Bytes uploaded (or to be uploaded) in these parts.
    pub fn parts(parts: &[Sums]) -> Local {
        Local {
            len: parts.iter().map(|p| p.len).sum(),
            crc64: digest::combined_crc64(parts),
            etags: vec![digest::multipart_etag(parts)],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// The same bytes.
    Same,
    /// Different bytes, and why that is certain.
    Different(String),
    /// No way to tell.
    Unknown(String),
}

pub fn compare(stored: &Stored, local: &Local) -> Evidence {
    if stored.len != local.len {
        return Evidence::Different(format!(
            "it holds {} bytes, the file has {}",
            stored.len, local.len
        ));
    }
    if let Some(crc) = &stored.crc64 {
        return if *crc == crc64_base64(local.crc64) {
            Evidence::Same
        } else {
            Evidence::Different(format!(
                "its CRC64NVME is {crc}, the file's is {}",
                crc64_base64(local.crc64)
            ))
        };
    }
    match &stored.etag {
        Some(etag) if local.etags.iter().any(|ours| ours == etag) => Evidence::Same,
        // Only an ETag that is a plain MD5 says the bytes differ; others (SSE-KMS, other part
        // sizes) just cannot be compared.
        Some(etag) if etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit()) => {
            match local.etags.iter().find(|ours| !ours.contains('-')) {
                Some(ours) => {
                    Evidence::Different(format!("its MD5 ETag is {etag}, the file's MD5 is {ours}"))
                }
                None => Evidence::Unknown(format!(
                    "no checksum stored, and its ETag {etag} is not comparable"
                )),
            }
        }
        Some(etag) => Evidence::Unknown(format!(
            "no checksum stored, and its ETag {etag} is not one computed here"
        )),
        None => Evidence::Unknown("neither a checksum nor an ETag stored".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(bytes: &[u8]) -> Local {
        Local::single(&Sums::of(bytes))
    }

    fn stored(len: u64, crc64: Option<String>, etag: Option<&str>) -> Stored {
        Stored {
            len,
            crc64,
            etag: etag.map(str::to_owned),
        }
    }

    #[test]
    fn only_matching_checksums_are_evidence() {
        let ours = local(b"hello");
        let crc = Some(Sums::of(b"hello").crc64_base64());
        let other_crc = Some(Sums::of(b"world").crc64_base64());
        let md5 = Sums::of(b"hello").etag();
        let cases = [
            (stored(5, crc.clone(), None), "same"),
            (stored(5, crc.clone(), Some("whatever")), "same"),
            (stored(5, other_crc.clone(), Some(&md5)), "different"),
            (stored(6, crc, None), "different"),
            (stored(5, None, Some(&md5)), "same"),
            (
                stored(5, None, Some(&Sums::of(b"world").etag())),
                "different",
            ),
            (
                stored(5, None, Some("0123456789abcdef0123456789abcdef-3")),
                "unknown",
            ),
            (stored(5, None, None), "unknown"),
        ];
        for (stored, want) in cases {
            let got = match compare(&stored, &ours) {
                Evidence::Same => "same",
                Evidence::Different(_) => "different",
                Evidence::Unknown(_) => "unknown",
            };
            assert_eq!(got, want, "{stored:?}");
        }
    }
}
