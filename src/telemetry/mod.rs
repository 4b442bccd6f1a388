//! What spillway tells its operator about the requests it handles.

pub mod request_log;
