//! The legacy upstream: the short way for bodyless GET/HEAD (`forward`), Pingora's proxy for the
//! rest (`proxy`), and the authorization subrequest (`authorize`).

pub mod authorize;
pub mod forward;
pub mod proxy;
