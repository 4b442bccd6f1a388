//! `Content-Type` by extension.

use std::borrow::Cow;

/// `Content-Type` by extension; text types declare UTF-8 so browsers need not sniff. The
/// common text types are static strings; others are built once per response.
pub fn content_type(relative_path: &str) -> Cow<'static, str> {
    let Some(mime) = mime_guess::from_path(relative_path).first_raw() else {
        return Cow::Borrowed("application/octet-stream");
    };
    let with_charset = match mime {
        "text/html" => "text/html; charset=utf-8",
        "text/css" => "text/css; charset=utf-8",
        "text/javascript" => "text/javascript; charset=utf-8",
        "text/plain" => "text/plain; charset=utf-8",
        "text/csv" => "text/csv; charset=utf-8",
        "text/xml" => "text/xml; charset=utf-8",
        "application/json" => "application/json; charset=utf-8",
        "application/javascript" => "application/javascript; charset=utf-8",
        "image/svg+xml" => "image/svg+xml; charset=utf-8",
        other if other.starts_with("text/") => {
            return Cow::Owned(format!("{other}; charset=utf-8"))
        }
        other => other,
    };
    Cow::Borrowed(with_charset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_by_extension() {
        let cases = [
            ("a.html", "text/html; charset=utf-8"),
            ("dir/a.css", "text/css; charset=utf-8"),
            ("a.JPG", "image/jpeg"),
            ("a.png", "image/png"),
            ("a.js", "text/javascript; charset=utf-8"),
            ("a.json", "application/json; charset=utf-8"),
            ("noextension", "application/octet-stream"),
            ("a.unknownext", "application/octet-stream"),
        ];
        for (path, want) in cases {
            assert_eq!(content_type(path), want, "{path}");
        }
    }
}
