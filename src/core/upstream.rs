//! An application server requests are proxied to (`upstreams:`), as the config names it.

use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    pub address: SocketAddr,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
}
