//! Failed exchanges with the upstream, said the same way on every path: one warning line in
//! an operator's words, one metrics label.

use pingora::{Error, ErrorSource, ErrorType};

use crate::core::upstream::Upstream;

/// What went wrong, as an operator reads it: Pingora's context and cause, without its error
/// type's name (`a transfer coding other than chunked`, not
/// ` InvalidHTTPHeader context: a transfer coding other than chunked`).
pub fn described(error: &Error) -> String {
    // A cause that is itself a Pingora error (a connect failure wraps one) says it better,
    // with its own context: the innermost one, once.
    let inner = error.cause.as_ref().and_then(|cause| {
        cause
            .downcast_ref::<Box<Error>>()
            .map(|boxed| &**boxed)
            .or_else(|| cause.downcast_ref::<Error>())
    });
    if let Some(inner) = inner {
        return described(inner);
    }
    match (&error.context, &error.cause) {
        (Some(context), Some(cause)) => format!("{}: {cause}", context.as_str()),
        (Some(context), None) => match error.etype() {
            ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
                format!("{}: timed out", context.as_str())
            }
            _ => context.as_str().to_owned(),
        },
        (None, Some(cause)) => cause.to_string(),
        (None, None) => error.etype().as_str().to_owned(),
    }
}

/// The one log line of a failed connect, naming the upstream and its address.
pub fn log_connect_failure(upstream: &Upstream, e: &Error) {
    tracing::warn!(upstream = upstream.name, address = %upstream.address, "cannot connect to upstream: {}", described(e));
}

/// Whether `error` only means the client closed its connection or stopped reading.
pub fn client_went_away(error: &Error) -> bool {
    *error.esource() == ErrorSource::Downstream
        && matches!(
            error.etype(),
            ErrorType::WriteError
                | ErrorType::ReadError
                | ErrorType::ConnectionClosed
                | ErrorType::WriteTimedout
        )
}

/// The `kind` label of a failed exchange with the upstream.
pub fn upstream_error_kind(error: &Error) -> &'static str {
    match error.etype() {
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
            "timeout"
        }
        ErrorType::ConnectRefused
        | ErrorType::ConnectNoRoute
        | ErrorType::ConnectError
        | ErrorType::BindError
        | ErrorType::SocketError => "connect",
        ErrorType::ConnectionClosed => "closed",
        ErrorType::ReadError | ErrorType::WriteError => "reset",
        ErrorType::InvalidHTTPHeader | ErrorType::H1Error | ErrorType::H2Error => "protocol",
        _ => "other",
    }
}
