//! The legacy upstream: the short way for bodyless GET/HEAD (`forward`), Pingora's proxy for the
//! rest (`proxy`), the authorization subrequest (`authorize`), and the fields all of them add
//! (`headers`).

pub mod authorize;
pub mod failure;
pub mod forward;
pub mod headers;
pub mod pool;
pub mod proxy;
