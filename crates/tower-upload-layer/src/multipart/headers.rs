//! The grammar of a multipart body's headers: the request's boundary parameter, a part's
//! header lines and its `Content-Disposition` parameters.

use super::MAX_PART_HEADERS;

/// What a part's headers say.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct PartHeaders {
    /// `Content-Disposition`'s `name`.
    pub(super) name: Option<String>,
    /// `Content-Disposition`'s `filename`.
    pub(super) file_name: Option<String>,
    /// `Content-Type`, as sent.
    pub(super) content_type: Option<String>,
}

impl PartHeaders {
    /// Parses a part's header block (its lines, without the empty line that ends it).
    pub(super) fn parse(headers: &str) -> Result<Self, String> {
        let mut field = Self::default();
        for (index, header) in headers.split("\r\n").enumerate() {
            if index == MAX_PART_HEADERS {
                return Err(format!("a part has more than {MAX_PART_HEADERS} headers"));
            }
            if header.starts_with([' ', '\t']) {
                return Err("folded part headers are not supported".into());
            }
            let Some((name, value)) = header.split_once(':') else {
                return Err(format!(
                    "malformed part header {:?}",
                    header.chars().take(64).collect::<String>()
                ));
            };
            let value = value.trim();
            if name.trim().eq_ignore_ascii_case("content-disposition") {
                // A repeated parameter is ignored: the first one counts, as in multer.
                for (key, value) in disposition_params(value) {
                    if key.eq_ignore_ascii_case("name") {
                        field.name.get_or_insert(value);
                    } else if key.eq_ignore_ascii_case("filename") {
                        field.file_name.get_or_insert(value);
                    }
                }
            } else if name.trim().eq_ignore_ascii_case("content-type") {
                field.content_type = Some(value.to_owned());
            }
        }
        Ok(field)
    }
}

/// Why a content type gives no boundary.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BoundaryError {
    /// Not `multipart/form-data` at all.
    NotMultipart,
    /// `multipart/form-data` without a valid boundary.
    Invalid,
}

/// The boundary of a `multipart/form-data` content type (RFC 2046: 1 to 70 characters of a
/// restricted set, quoted or not, not ending in a space).
pub(crate) fn boundary(content_type: &str) -> Result<&str, BoundaryError> {
    let mut params = content_type.split(';');
    let essence = params.next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("multipart/form-data") {
        return Err(BoundaryError::NotMultipart);
    }
    let value = params
        .find_map(|param| {
            let (name, value) = param.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("boundary")
                .then(|| value.trim())
        })
        .ok_or(BoundaryError::Invalid)?;
    let value = match value.strip_prefix('"') {
        Some(quoted) => quoted.strip_suffix('"').ok_or(BoundaryError::Invalid)?,
        None => value,
    };
    let allowed = |c: char| c.is_ascii_alphanumeric() || "'()+_,-./:=? ".contains(c);
    let valid =
        (1..=70).contains(&value.len()) && value.chars().all(allowed) && !value.ends_with(' ');
    valid.then_some(value).ok_or(BoundaryError::Invalid)
}

/// `form-data; name="a"; filename="b.txt"` -> (`name`, `a`), (`filename`, `b.txt`).
fn disposition_params(value: &str) -> Vec<(String, String)> {
    let mut params = Vec::new();
    let mut rest = value;
    // Skip the disposition type.
    match rest.find(';') {
        Some(at) => rest = &rest[at + 1..],
        None => return params,
    }
    loop {
        rest = rest.trim_start_matches([' ', '\t', ';']);
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().to_owned();
        rest = &rest[eq + 1..];
        let value = if let Some(quoted) = rest.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((at, c)) = chars.next() {
                match c {
                    // Only `\"` is an escape: browsers send Windows paths (`C:\dir\a.txt`)
                    // with their backslashes as they are.
                    '\\' if quoted[at + 1..].starts_with('"') => {
                        chars.next();
                        value.push('"');
                    }
                    '"' => {
                        end = at + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            rest = &quoted[end..];
            value
        } else {
            let end = rest.find(';').unwrap_or(rest.len());
            let value = rest[..end].trim().to_owned();
            rest = &rest[end..];
            value
        };
        params.push((key, value));
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_follow_rfc_2046() {
        assert_eq!(boundary("multipart/form-data; boundary=abc"), Ok("abc"));
        assert_eq!(
            boundary("Multipart/Form-Data; charset=utf-8; BOUNDARY=\"a b:c\""),
            Ok("a b:c")
        );
        let chromium = "multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW";
        assert_eq!(
            boundary(chromium),
            Ok("----WebKitFormBoundary7MA4YWxkTrZu0gW")
        );
        for bad in [
            "multipart/form-data",
            "multipart/form-data; boundary=",
            "multipart/form-data; boundary=\"\"",
            "multipart/form-data; boundary=\"unclosed",
            "multipart/form-data; boundary=\"trailing \"",
            "multipart/form-data; boundary=bad\u{7f}",
        ] {
            assert_eq!(boundary(bad), Err(BoundaryError::Invalid), "{bad:?}");
        }
        for other in ["multipart/mixed; boundary=abc", "application/json", ""] {
            assert_eq!(
                boundary(other),
                Err(BoundaryError::NotMultipart),
                "{other:?}"
            );
        }
        assert_eq!(
            boundary(&format!("multipart/form-data; boundary={}", "x".repeat(70))).map(str::len),
            Ok(70)
        );
        assert_eq!(
            boundary(&format!("multipart/form-data; boundary={}", "x".repeat(71))),
            Err(BoundaryError::Invalid)
        );
    }

    #[test]
    fn disposition_keeps_backslashes_but_unescapes_quotes() {
        let params = disposition_params(r#"form-data; name="f"; filename="C:\dir\a \"q\".txt""#);
        assert_eq!(
            params,
            [
                ("name".to_owned(), "f".to_owned()),
                ("filename".to_owned(), r#"C:\dir\a "q".txt"#.to_owned()),
            ]
        );
        let bare = disposition_params("form-data; name=field; filename=a.txt");
        assert_eq!(bare[1], ("filename".to_owned(), "a.txt".to_owned()));
    }
}
