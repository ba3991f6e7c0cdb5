//! The one place a MIME type is taken apart.

/// The essence of a MIME type (`type/subtype`, RFC 9110 §8.3.1): the part before any
/// parameters, without surrounding whitespace. Case is kept; compare with
/// `eq_ignore_ascii_case` or lower-case it.
pub(crate) fn essence(mime_type: &str) -> &str {
    mime_type.split(';').next().unwrap_or_default().trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn essence_drops_parameters_and_whitespace() {
        assert_eq!(essence("text/plain; charset=utf-8"), "text/plain");
        assert_eq!(essence("  Image/PNG  "), "Image/PNG");
        assert_eq!(essence("application/pdf;x=\"a;b\""), "application/pdf");
        assert_eq!(essence(""), "");
        assert_eq!(essence(";charset=utf-8"), "");
    }
}
