//! Downloads held open.

/// Bytes each of which depends on its offset, so any misplaced chunk shows.
pub fn patterned(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i / 7) ^ (i % 251)) as u8).collect()
}

/// Starts a GET for `path`, reads the response head and `prefix` body bytes, and returns the
/// stream (the rest unread, so the server is held back by the full socket buffers).
pub fn start_download(
    port: u16,
    path: &str,
    prefix: usize,
) -> (std::net::TcpStream, usize, Vec<u8>) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the head");
        got.extend_from_slice(&buf[..n]);
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&got[..head_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut body = got.split_off(head_end);
    while body.len() < prefix {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0);
        body.extend_from_slice(&buf[..n]);
    }
    (stream, length, body)
}

/// Reads the rest of a download until the server closes it (or breaks it off).
pub fn read_rest(mut stream: std::net::TcpStream, mut body: Vec<u8>) -> Vec<u8> {
    use std::io::Read;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return body,
            Ok(n) => body.extend_from_slice(&buf[..n]),
        }
    }
}
