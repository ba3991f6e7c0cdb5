//! Streaming digests of uploaded files (RFC 9530 `Repr-Digest` / `Content-Digest`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha2::{Digest as _, Sha256, Sha512};

/// A digest algorithm the layer computes while the bytes pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DigestAlgorithm {
    /// SHA-256 (`sha-256` in RFC 9530's registry).
    Sha256,
}

/// The hashes one file needs: the configured one, and any the client sent a value for.
#[derive(Clone, Debug, Default)]
pub(crate) struct Digester {
    sha256: Option<Sha256>,
    sha512: Option<Sha512>,
    /// The client's values (RFC 9530 names, raw digests).
    expected: Vec<(&'static str, Vec<u8>)>,
}

impl Digester {
    /// The hashes for a file: `configured`, plus those `header` (a part's `Content-Digest` or
    /// `Repr-Digest`) names; `None` when there is nothing to compute.
    ///
    /// # Errors
    ///
    /// The header is not an RFC 9530 digest dictionary.
    pub(crate) fn new(
        configured: Option<DigestAlgorithm>,
        header: Option<&str>,
    ) -> Result<Option<Self>, String> {
        let expected = header
            .map(parse_dictionary)
            .transpose()?
            .unwrap_or_default();
        let wants = |name: &str| expected.iter().any(|(algorithm, _)| *algorithm == name);
        let digester = Self {
            sha256: (configured == Some(DigestAlgorithm::Sha256) || wants("sha-256"))
                .then(Sha256::new),
            sha512: wants("sha-512").then(Sha512::new),
            expected,
        };
        Ok((digester.sha256.is_some() || digester.sha512.is_some()).then_some(digester))
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        if let Some(hash) = self.sha256.as_mut() {
            hash.update(bytes);
        }
        if let Some(hash) = self.sha512.as_mut() {
            hash.update(bytes);
        }
    }

    /// The SHA-256 digest in RFC 9530's form, and whether every value the client sent for
    /// an algorithm computed here matches (values for other algorithms are ignored, as the
    /// RFC allows).
    pub(crate) fn finish(self) -> (Option<String>, bool) {
        let sha256 = self.sha256.map(|hash| hash.finalize().to_vec());
        let sha512 = self.sha512.map(|hash| hash.finalize().to_vec());
        let matches = self.expected.iter().all(|(algorithm, value)| {
            let computed = match *algorithm {
                "sha-256" => sha256.as_deref(),
                "sha-512" => sha512.as_deref(),
                _ => return true,
            };
            computed == Some(value.as_slice())
        });
        let repr = sha256.map(|digest| format!("sha-256=:{}:", STANDARD.encode(digest)));
        (repr, matches)
    }
}

/// `sha-256=:<base64>:, sha-512=:<base64>:` (an RFC 8941 dictionary of byte sequences);
/// unknown algorithms are kept by name for being ignored later.
fn parse_dictionary(header: &str) -> Result<Vec<(&'static str, Vec<u8>)>, String> {
    let mut found = Vec::new();
    for member in header.split(',') {
        let member = member.trim_matches([' ', '\t']);
        let bad = || format!("the digest header member {member:?} is not `algorithm=:base64:`");
        let (name, value) = member.split_once('=').ok_or_else(bad)?;
        // An RFC 8941 key: a lower-case letter or `*`, then lower case, digits, `_-.*`.
        let key_ok = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '*')
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.*".contains(&b));
        if !key_ok {
            return Err(bad());
        }
        let value = value
            .strip_prefix(':')
            .and_then(|value| value.strip_suffix(':'))
            .ok_or_else(bad)?;
        let value = STANDARD.decode(value).map_err(|_| bad())?;
        let name = match name {
            "sha-256" => "sha-256",
            "sha-512" => "sha-512",
            _ => "other",
        };
        found.push((name, value));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9530 appendix: `{"hello": "world"}` has this sha-256.
    const HELLO: &[u8] = b"{\"hello\": \"world\"}";
    const HELLO_SHA256: &str = "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:";

    #[test]
    fn computes_rfc_9530_values() {
        let mut digester = Digester::new(Some(DigestAlgorithm::Sha256), None)
            .unwrap()
            .unwrap();
        digester.update(&HELLO[..5]);
        digester.update(&HELLO[5..]);
        assert_eq!(digester.finish(), (Some(HELLO_SHA256.to_owned()), true));
        assert!(Digester::new(None, None).unwrap().is_none());
    }

    #[test]
    fn checks_what_the_client_sent() {
        let mut good = Digester::new(None, Some(HELLO_SHA256)).unwrap().unwrap();
        good.update(HELLO);
        assert!(good.finish().1);
        let mut bad = Digester::new(None, Some(HELLO_SHA256)).unwrap().unwrap();
        bad.update(b"something else");
        assert!(!bad.finish().1);
        // sha-512 is checked too; unknown algorithms are ignored.
        let sha512 = format!("sha-512=:{}:", STANDARD.encode(Sha512::digest(HELLO)));
        let header = format!("unixsum=:AAAA:, {sha512}");
        let mut both = Digester::new(None, Some(&header)).unwrap().unwrap();
        both.update(HELLO);
        assert_eq!(both.finish(), (None, true));
        assert!(Digester::new(None, Some("unixsum=:AAAA:"))
            .unwrap()
            .is_none());
    }

    #[test]
    fn malformed_headers_are_errors() {
        for bad in ["sha-256", "sha-256=abc", "sha-256=:not base64!:", "=::"] {
            assert!(Digester::new(None, Some(bad)).is_err(), "{bad:?}");
        }
    }
}
