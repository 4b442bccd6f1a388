//! What the front and the upstream clients share on a connection: HTTP/1 on the wire (request
//! heads in, response heads out), the one response writer (HTTP/1 bytes and HTTP/2 frames),
//! and deciding without blocking the event loop.

pub mod answer;
pub mod chunked;
pub mod decide;
pub mod encoder;
pub mod http1;
pub mod respond;
