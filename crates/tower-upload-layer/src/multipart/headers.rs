//! The grammar of a multipart body's headers: the request's boundary parameter, a part's
//! header lines and its `Content-Disposition` parameters.

use std::borrow::Cow;

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
    /// `Content-Digest` (or `Repr-Digest`), as sent: the client's digest of the part's body
    /// (RFC 9530).
    pub(super) digest: Option<String>,
}

impl PartHeaders {
    /// Parses a part's header block: its lines, joined by CRLF, without the CRLF that ends
    /// the last one. The block has no bare CR or LF (the reader refuses them).
    ///
    /// Header names must be tokens (RFC 9110), folded lines (obs-fold) are unfolded, the
    /// disposition must be `form-data`, and a `Content-Transfer-Encoding` other than the
    /// identity ones (`7bit`, `8bit`, `binary`) is refused rather than stored encoded.
    pub(super) fn parse(block: &str) -> Result<Self, String> {
        let mut parsed = Self::default();
        let mut lines = block.split("\r\n").peekable();
        let mut count = 0;
        while let Some(first) = lines.next() {
            if first.starts_with(OWS) {
                return Err("a part's first header line is a fold (it starts with a space)".into());
            }
            let mut header = Cow::Borrowed(first);
            // obs-fold: a line that starts with a space or tab continues the header; the
            // fold and the whitespace around it become one space.
            while let Some(fold) = lines.next_if(|line| line.starts_with(OWS)) {
                let joined = header.to_mut();
                joined.truncate(joined.trim_end_matches(OWS).len());
                joined.push(' ');
                joined.push_str(fold.trim_start_matches(OWS));
            }
            count += 1;
            if count > MAX_PART_HEADERS {
                return Err(format!("a part has more than {MAX_PART_HEADERS} headers"));
            }
            parsed.header(&header)?;
        }
        Ok(parsed)
    }

    /// Takes in one (unfolded) header line.
    fn header(&mut self, line: &str) -> Result<(), String> {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("malformed part header {:?}", clip(line)));
        };
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(format!("invalid part header name {:?}", clip(name)));
        }
        // RFC 9110 field values have no control characters but HTAB: a NUL or an ESC in a
        // file name is refused rather than read one way here and another way elsewhere.
        if value
            .bytes()
            .any(|byte| (byte < 0x20 && byte != b'\t') || byte == 0x7f)
        {
            return Err(format!(
                "the part header {:?} has a control character",
                clip(name)
            ));
        }
        let value = value.trim_matches(OWS);
        if name.eq_ignore_ascii_case("content-disposition") {
            let (kind, params) = value.split_once(';').unwrap_or((value, ""));
            let kind = kind.trim_matches(OWS);
            if !kind.eq_ignore_ascii_case("form-data") {
                return Err(format!(
                    "a part's Content-Disposition is {:?}, not form-data",
                    clip(kind)
                ));
            }
            let disposition = Disposition::parse(params)?;
            // A repeated parameter is ignored: the first one counts, as in multer.
            if let Some(name) = disposition.name {
                self.name.get_or_insert(name);
            }
            if let Some(file_name) = disposition.file_name {
                self.file_name.get_or_insert(file_name);
            }
        } else if name.eq_ignore_ascii_case("content-type") {
            self.content_type = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("content-digest")
            || name.eq_ignore_ascii_case("repr-digest")
        {
            // A part's body has no content coding: both digests cover the same bytes.
            self.digest.get_or_insert_with(|| value.to_owned());
        } else if name.eq_ignore_ascii_case("content-transfer-encoding")
            && !["7bit", "8bit", "binary"]
                .iter()
                .any(|identity| value.eq_ignore_ascii_case(identity))
        {
            // Decoding base64 or quoted-printable is not worth it (no browser sends them);
            // storing the encoded bytes as the file would be wrong.
            return Err(format!(
                "Content-Transfer-Encoding {} is not supported",
                clip(value)
            ));
        }
        Ok(())
    }
}

/// Optional whitespace (RFC 9110 OWS).
const OWS: [char; 2] = [' ', '\t'];

/// At most 64 characters of `text`, for error messages.
fn clip(text: &str) -> String {
    text.chars().take(64).collect()
}

/// RFC 9110 `tchar`: the bytes a token (a header or parameter name) is made of.
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// The parameters of a `form-data` disposition the reader uses.
#[derive(Debug, Default, PartialEq, Eq)]
struct Disposition {
    name: Option<String>,
    file_name: Option<String>,
}

impl Disposition {
    /// Reads the parameters after `form-data;`. For the file name, `filename*` (RFC 8187)
    /// wins over RFC 2231 continuations (`filename*0*=`, `filename*1=`), which win over
    /// `filename`, whatever their order; of a repeated parameter the first one counts.
    fn parse(params: &str) -> Result<Self, String> {
        let mut name = None;
        let mut plain = None;
        let mut extended = None;
        // Continuation sections: number -> (percent-encoded, value).
        let mut sections = std::collections::BTreeMap::new();
        for (key, value) in disposition_params(params)? {
            let key = key.to_ascii_lowercase();
            match key.as_str() {
                "name" => {
                    name.get_or_insert(value);
                }
                "filename" => {
                    plain.get_or_insert(value);
                }
                "filename*" => {
                    extended.get_or_insert(value);
                }
                _ => {
                    let Some(section) = key.strip_prefix("filename*") else {
                        continue;
                    };
                    let (number, encoded) = match section.strip_suffix('*') {
                        Some(number) => (number, true),
                        None => (section, false),
                    };
                    // Section numbers are digits without leading zeros.
                    let canonical = !number.is_empty()
                        && number.bytes().all(|b| b.is_ascii_digit())
                        && (number == "0" || !number.starts_with('0'));
                    if let (true, Ok(number)) = (canonical, number.parse::<u32>()) {
                        sections.entry(number).or_insert((encoded, value));
                    }
                }
            }
        }
        let had_extended = extended.is_some() || !sections.is_empty();
        let file_name = extended
            .as_deref()
            .and_then(decode_ext_value)
            .or_else(|| join_continuations(&sections))
            .or(plain);
        if had_extended && file_name.is_none() {
            return Err("a part's filename* parameter cannot be decoded".into());
        }
        Ok(Self { name, file_name })
    }
}

/// RFC 8187 `ext-value` (`UTF-8''%e2%82%ac.txt`): the text, if its charset is UTF-8,
/// ISO-8859-1 or US-ASCII and it decodes.
fn decode_ext_value(value: &str) -> Option<String> {
    let (charset, rest) = value.split_once('\'')?;
    let (_language, encoded) = rest.split_once('\'')?;
    decode_charset(charset, percent_decode(encoded)?)
}

/// Joins RFC 2231 continuation sections 0, 1, 2... (up to the first missing number); the
/// charset is the first section's, when that one is encoded.
fn join_continuations(
    sections: &std::collections::BTreeMap<u32, (bool, String)>,
) -> Option<String> {
    let mut bytes = Vec::new();
    let mut charset = "UTF-8";
    for (expected, (&number, (encoded, value))) in (0..).zip(sections) {
        if number != expected {
            break;
        }
        match (number, encoded) {
            (0, true) => {
                let (set, rest) = value.split_once('\'')?;
                let (_language, encoded) = rest.split_once('\'')?;
                charset = set;
                bytes.extend(percent_decode(encoded)?);
            }
            (_, true) => bytes.extend(percent_decode(value)?),
            (_, false) => bytes.extend_from_slice(value.as_bytes()),
        }
    }
    if bytes.is_empty() && !sections.contains_key(&0) {
        return None;
    }
    decode_charset(charset, bytes)
}

/// `%XX` escapes decoded; `None` for a `%` not followed by two hex digits.
fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let hex = tail.get(..2)?;
            let hex = std::str::from_utf8(hex).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    Some(bytes)
}

/// `bytes` as text in `charset` (UTF-8, ISO-8859-1 or US-ASCII, any case).
fn decode_charset(charset: &str, bytes: Vec<u8>) -> Option<String> {
    if charset.eq_ignore_ascii_case("utf-8") {
        String::from_utf8(bytes).ok()
    } else if charset.eq_ignore_ascii_case("iso-8859-1") {
        Some(bytes.into_iter().map(char::from).collect())
    } else if charset.eq_ignore_ascii_case("us-ascii") {
        bytes
            .is_ascii()
            .then(|| bytes.into_iter().map(char::from).collect())
    } else {
        None
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

/// The parameters after a disposition type: `name="a"; filename = "b.txt"` -> (`name`,
/// `a`), (`filename`, `b.txt`), in order. Parameters without a value, or whose name is not a
/// token, are skipped; a quoted value that is never closed is an error (whatever follows
/// it would be read differently by different parsers).
fn disposition_params(params: &str) -> Result<Vec<(String, String)>, String> {
    let mut found = Vec::new();
    let mut rest = params;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ';']);
        if rest.is_empty() {
            break;
        }
        let key_end = rest.find(['=', ';']).unwrap_or(rest.len());
        let key = rest[..key_end].trim_matches(OWS);
        rest = &rest[key_end..];
        let Some(value) = rest.strip_prefix('=') else {
            // A parameter without a value (`form-data; foo; name="a"`).
            continue;
        };
        rest = value.trim_start_matches(OWS);
        let value = if let Some(quoted) = rest.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((at, c)) = chars.next() {
                match c {
                    // Only `\"` is an escape: browsers send Windows paths (`C:\dir\a.txt`)
                    // with their backslashes as they are.
                    '\\' if quoted[at + 1..].starts_with('"') => {
                        chars.next();
                        value.push('"');
                    }
                    '"' => {
                        end = Some(at + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let Some(end) = end else {
                return Err(format!(
                    "the quoted value of the parameter {:?} is not closed",
                    clip(key)
                ));
            };
            rest = &quoted[end..];
            value
        } else {
            let end = rest.find(';').unwrap_or(rest.len());
            let value = rest[..end].trim_matches(OWS).to_owned();
            rest = &rest[end..];
            value
        };
        if !key.is_empty() && key.bytes().all(is_tchar) {
            found.push((key.to_owned(), value));
        }
    }
    Ok(found)
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
        let params = disposition_params(r#"name="f"; filename="C:\dir\a \"q\".txt""#).unwrap();
        assert_eq!(
            params,
            [
                ("name".to_owned(), "f".to_owned()),
                ("filename".to_owned(), r#"C:\dir\a "q".txt"#.to_owned()),
            ]
        );
        let bare = disposition_params("name=field; filename=a.txt").unwrap();
        assert_eq!(bare[1], ("filename".to_owned(), "a.txt".to_owned()));
    }

    /// An unclosed quoted value and control characters in a header value are refused: other
    /// parsers would read them differently (these were accepted before).
    #[test]
    fn unclosed_quotes_and_control_characters_are_refused() {
        assert!(file_name(r#"form-data; name="f"; filename="a.txt"#).is_err());
        assert!(disposition_params(r#"name="f"#).is_err());
        for control in ["\0", "\u{1b}", "\u{7f}", "\u{8}"] {
            let line = format!("form-data; name=\"f\"; filename=\"a{control}b.txt\"");
            let error = file_name(&line).unwrap_err();
            assert!(error.contains("control character"), "{control:?}: {error}");
        }
        // A tab is fine (RFC 9110 allows HTAB in field values).
        assert_eq!(
            file_name("form-data; name=\"f\"; filename=\"a\tb.txt\"").unwrap(),
            Some("a\tb.txt".to_owned())
        );
    }

    /// The file name `PartHeaders::parse` reads from one `Content-Disposition` value.
    fn file_name(disposition: &str) -> Result<Option<String>, String> {
        PartHeaders::parse(&format!("Content-Disposition: {disposition}")).map(|h| h.file_name)
    }

    fn name_and_file(disposition: &str) -> (Option<String>, Option<String>) {
        let headers = PartHeaders::parse(&format!("Content-Disposition: {disposition}")).unwrap();
        (headers.name, headers.file_name)
    }

    #[test]
    fn whitespace_around_equals_signs_is_allowed() {
        assert_eq!(
            file_name(r#"form-data; name="f"; filename = "a;b.txt""#),
            Ok(Some("a;b.txt".to_owned()))
        );
        assert_eq!(
            name_and_file("form-data ;name =\t\"f\" ;\tfilename=\t x.txt \t"),
            (Some("f".to_owned()), Some("x.txt".to_owned()))
        );
    }

    #[test]
    fn parameters_without_a_value_are_skipped() {
        for disposition in [
            r#"form-data; name="f"; foo; filename="x""#,
            r#"form-data; foo; name="f"; filename="x"; bar"#,
            r#"form-data;; name="f";;; filename="x";"#,
            r#"form-data; name="f"; f o o="y"; filename="x""#,
        ] {
            assert_eq!(
                name_and_file(disposition),
                (Some("f".to_owned()), Some("x".to_owned())),
                "{disposition:?}"
            );
        }
    }

    #[test]
    fn extended_file_names_win_and_are_decoded() {
        let euro = Ok(Some("\u{20ac}.txt".to_owned()));
        assert_eq!(
            file_name("form-data; name=\"f\"; filename*=UTF-8''%e2%82%ac.txt"),
            euro
        );
        assert_eq!(
            file_name("form-data; filename*=utf-8'en'%E2%82%AC.txt; filename=\"euro.txt\""),
            euro
        );
        assert_eq!(
            file_name("form-data; filename=\"euro.txt\"; filename*=UTF-8''%e2%82%ac.txt"),
            euro
        );
        assert_eq!(
            file_name("form-data; filename*=iso-8859-1'en'%A3%20rates.txt"),
            Ok(Some("\u{a3} rates.txt".to_owned()))
        );
        assert_eq!(
            file_name("form-data; filename*=\"UTF-8''quoted%20too.txt\""),
            Ok(Some("quoted too.txt".to_owned()))
        );
        // The first of repeated ones counts.
        assert_eq!(
            file_name("form-data; filename*=UTF-8''one; filename*=UTF-8''two"),
            Ok(Some("one".to_owned()))
        );
        // Undecodable: the plain `filename` if there is one, else a refusal.
        for bad in [
            "Shift_JIS''%82%a0.txt",
            "UTF-8''%ff.txt",
            "UTF-8''%e2%8",
            "UTF-8''%zz",
            "no-quotes.txt",
        ] {
            assert_eq!(
                file_name(&format!(
                    "form-data; filename*={bad}; filename=\"plain.txt\""
                )),
                Ok(Some("plain.txt".to_owned())),
                "{bad:?}"
            );
            assert!(
                file_name(&format!("form-data; filename*={bad}")).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn rfc_2231_continuations_are_joined() {
        assert_eq!(
            file_name("form-data; filename*0*=UTF-8''%e2%82; filename*1*=%ac; filename*2=\".t\"; filename*3=xt"),
            Ok(Some("\u{20ac}.txt".to_owned()))
        );
        // In any order, and a gap ends them.
        assert_eq!(
            file_name("form-data; filename*1=\"b\"; filename*0=\"a\"; filename*3=\"d\""),
            Ok(Some("ab".to_owned()))
        );
        // `filename*` wins over them, they win over `filename`.
        assert_eq!(
            file_name("form-data; filename*0=\"a\"; filename*=UTF-8''x; filename=\"p\""),
            Ok(Some("x".to_owned()))
        );
        assert_eq!(
            file_name("form-data; filename=\"p\"; filename*0=\"a\""),
            Ok(Some("a".to_owned()))
        );
        // Leading zeros are not section numbers; without section 0 there is no name.
        assert_eq!(
            file_name("form-data; filename*00=\"a\"; filename=\"p\""),
            Ok(Some("p".to_owned()))
        );
        assert!(file_name("form-data; filename*1=\"a\"").is_err());
    }

    #[test]
    fn header_lines_follow_rfc_9110() {
        let folded = PartHeaders::parse(
            "Content-Disposition: form-data; name=\"f\";  \r\n   filename=\"a.txt\"\r\nContent-Type: text/plain",
        )
        .unwrap();
        assert_eq!(folded.file_name.as_deref(), Some("a.txt"));
        assert_eq!(folded.content_type.as_deref(), Some("text/plain"));
        assert!(PartHeaders::parse("\tX: y\r\nContent-Disposition: form-data").is_err());
        for bad in [
            "X Y: z",
            "X\u{7f}: z",
            "X\"Y\": z",
            "(X): z",
            "[X]: z",
            "X/Y: z",
            ": z",
        ] {
            let error = PartHeaders::parse(bad).unwrap_err();
            assert!(error.contains("header name"), "{bad:?}: {error}");
        }
        assert!(PartHeaders::parse("Content-Disposition: attachment; filename=\"a\"").is_err());
        assert!(PartHeaders::parse("Content-Transfer-Encoding: base64").is_err());
        assert!(PartHeaders::parse("Content-Transfer-Encoding: 8bit").is_ok());
    }
}
