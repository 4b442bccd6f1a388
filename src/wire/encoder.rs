//! A content coding applied to a body as it is relayed (gzip, brotli, zstd): bytes in, coded
//! bytes out as the encoder produces them; `flush` before waiting on the upstream, so a page
//! sent in parts still reaches the client in parts.

use std::io::{self, Write};

use crate::http::negotiate::Encoding;

/// Levels chosen for on-the-fly work, nearer the fast end than the small one (nginx's
/// `gzip_comp_level` is 1 by default): gzip 5, brotli 4, zstd 3.
const GZIP_LEVEL: u32 = 5;
const BROTLI_QUALITY: u32 = 4;
const BROTLI_WINDOW: u32 = 22;
const ZSTD_LEVEL: i32 = 3;

pub enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    pub fn new(encoding: Encoding) -> io::Result<Encoder> {
        Ok(match encoding {
            Encoding::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(GZIP_LEVEL),
            )),
            Encoding::Br => Encoder::Br(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                4096,
                BROTLI_QUALITY,
                BROTLI_WINDOW,
            ))),
            Encoding::Zstd => {
                Encoder::Zstd(zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL)?)
            }
        })
    }

    /// Codes `data`; what is ready goes to `out`.
    pub fn push(&mut self, data: &[u8], out: impl FnMut(&[u8])) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.write_all(data)?,
            Encoder::Br(e) => e.write_all(data)?,
            Encoder::Zstd(e) => e.write_all(data)?,
        }
        self.take(out);
        Ok(())
    }

    /// Sends on all that was pushed so far (a sync flush: the stream goes on after it).
    pub fn flush(&mut self, out: impl FnMut(&[u8])) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush()?,
            Encoder::Br(e) => e.flush()?,
            Encoder::Zstd(e) => e.flush()?,
        }
        self.take(out);
        Ok(())
    }

    /// Ends the coded stream.
    pub fn finish(self, mut out: impl FnMut(&[u8])) -> io::Result<()> {
        let rest = match self {
            Encoder::Gzip(e) => e.finish()?,
            Encoder::Br(e) => e.into_inner(),
            Encoder::Zstd(e) => e.finish()?,
        };
        out(&rest);
        Ok(())
    }

    fn take(&mut self, mut out: impl FnMut(&[u8])) {
        let buffer = match self {
            Encoder::Gzip(e) => e.get_mut(),
            Encoder::Br(e) => e.get_mut(),
            Encoder::Zstd(e) => e.get_mut(),
        };
        if !buffer.is_empty() {
            out(buffer);
            buffer.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn decode(encoding: Encoding, coded: &[u8]) -> Vec<u8> {
        let mut plain = Vec::new();
        match encoding {
            Encoding::Gzip => {
                flate2::read::GzDecoder::new(coded)
                    .read_to_end(&mut plain)
                    .unwrap();
            }
            Encoding::Br => {
                brotli::Decompressor::new(coded, 4096)
                    .read_to_end(&mut plain)
                    .unwrap();
            }
            Encoding::Zstd => {
                zstd::stream::read::Decoder::new(coded)
                    .unwrap()
                    .read_to_end(&mut plain)
                    .unwrap();
            }
        };
        plain
    }

    #[test]
    fn every_coding_round_trips_byte_exact_in_pieces_with_flushes() {
        let text: Vec<u8> = (0..50_000u32)
            .flat_map(|i| format!("line {i} of the page\n").into_bytes())
            .collect();
        for encoding in [Encoding::Gzip, Encoding::Br, Encoding::Zstd] {
            let mut coded = Vec::new();
            let mut encoder = Encoder::new(encoding).unwrap();
            for (i, piece) in text.chunks(7_777).enumerate() {
                encoder.push(piece, |c| coded.extend_from_slice(c)).unwrap();
                if i % 3 == 0 {
                    encoder.flush(|c| coded.extend_from_slice(c)).unwrap();
                }
            }
            encoder.finish(|c| coded.extend_from_slice(c)).unwrap();
            assert!(
                coded.len() < text.len() / 4,
                "{encoding:?}: {}",
                coded.len()
            );
            assert_eq!(decode(encoding, &coded), text, "{encoding:?}");
        }
    }
}
