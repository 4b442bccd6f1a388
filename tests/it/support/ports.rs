//! Ports: free ones, and waiting for one to accept.

use std::collections::BTreeSet;

use super::*;

/// A port that was free a moment ago and that no other caller in this test process has been
/// given. Only for things we cannot hand a bound socket to (the spillway child process);
/// in-process servers bind port 0 themselves and keep the listener, which has no race at all.
/// The kernel may offer a port it just released again (two calls in a row once gave one
/// stack the same port for its plain and its TLS listener), so ports given out are remembered.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let listener = TcpListener::bind((LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        if GIVEN.lock().unwrap_or_else(|e| e.into_inner()).insert(port) {
            return port;
        }
    }
}

/// Polls `done`, with backoff, until it holds; fails the test after 30 s, naming `what`.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut pause = Duration::from_millis(5);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 30 s");
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Polls until `left()` is 0; fails the test when it has not gone down for 30 s (for work
/// that takes long in a loaded debug build but must keep moving).
pub fn wait_until_none_left(what: &str, mut left: impl FnMut() -> usize) {
    let mut fewest = left();
    let mut moved_at = Instant::now();
    let mut pause = Duration::from_millis(5);
    while fewest > 0 {
        assert!(
            moved_at.elapsed() < Duration::from_secs(30),
            "{what}: {fewest} left, and none done in 30 s"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
        let now = left();
        if now < fewest {
            fewest = now;
            moved_at = Instant::now();
        }
    }
}

/// Poll-connects until `port` accepts, with a short exponential backoff; fails the test after
/// `PORT_WAIT`.
pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + PORT_WAIT;
    let mut backoff = Backoff::new();
    while !port_accepts(port) {
        assert!(
            Instant::now() < deadline,
            "nothing accepted connections on 127.0.0.1:{port} within {PORT_WAIT:?}"
        );
        backoff.wait();
    }
}

pub(crate) fn port_accepts(port: u16) -> bool {
    let addr = SocketAddr::from((LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// 2 ms, 4 ms, ... capped at 100 ms: fast when things are quick, cheap when not.
pub(crate) struct Backoff(Duration);

impl Backoff {
    pub(crate) fn new() -> Self {
        Self(Duration::from_millis(2))
    }
    pub(crate) fn wait(&mut self) {
        std::thread::sleep(self.0);
        self.0 = (self.0 * 2).min(Duration::from_millis(100));
    }
}
