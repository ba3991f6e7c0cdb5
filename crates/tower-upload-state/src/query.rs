//! The query string the widget sends: `?key=K&command=C&cid=...`.

use std::borrow::Cow;
use std::fmt;

use crate::{KeyError, UploadInfo, UploadKey};

/// The parameters of an upload or status request, percent-decoded.
///
/// Unknown parameters (jQuery's `_=<nonce>`, the widget's `multiple=true`) are ignored; a
/// `key` or `command` given twice is refused, since the two could disagree.
///
/// # Example
///
/// ```
/// use tower_upload_state::{Command, UploadQuery};
///
/// let query = UploadQuery::parse("key=k1&command=status&_=1700000000")?;
/// assert_eq!(query.key()?.as_str(), "k1");
/// assert_eq!(query.command()?, Some(Command::Status));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UploadQuery<'a> {
    /// The `key` parameter as sent (one key, or a `;` batch).
    pub key: Option<Cow<'a, str>>,
    /// The `command` parameter as sent.
    pub command: Option<Cow<'a, str>>,
    /// The `cid` parameter (the widget's control id); `None` when absent or empty; at most
    /// [`UploadInfo::MAX_CID_LEN`](crate::UploadInfo::MAX_CID_LEN) bytes.
    pub cid: Option<Cow<'a, str>>,
}

impl<'a> UploadQuery<'a> {
    /// Parses a URI's query (the part after `?`).
    ///
    /// # Errors
    ///
    /// [`QueryError::Repeated`] when `key`, `command` or `cid` appears twice,
    /// [`QueryError::TooLong`] when `cid` is longer than
    /// [`UploadInfo::MAX_CID_LEN`](crate::UploadInfo::MAX_CID_LEN) (128 bytes, decoded).
    pub fn parse(query: &'a str) -> Result<Self, QueryError> {
        let mut parsed = Self::default();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let (slot, name) = match &*name {
                "key" => (&mut parsed.key, "key"),
                "command" => (&mut parsed.command, "command"),
                "cid" => (&mut parsed.cid, "cid"),
                _ => continue,
            };
            if slot.is_some() {
                return Err(QueryError::Repeated(name));
            }
            *slot = Some(value);
        }
        if parsed.cid.as_deref() == Some("") {
            parsed.cid = None;
        }
        if parsed
            .cid
            .as_ref()
            .is_some_and(|cid| cid.len() > UploadInfo::MAX_CID_LEN)
        {
            return Err(QueryError::TooLong {
                name: "cid",
                max: UploadInfo::MAX_CID_LEN,
            });
        }
        Ok(parsed)
    }

    /// The single key of a status or command request.
    ///
    /// # Errors
    ///
    /// [`KeyError::Missing`] without a `key`, else the reasons of [`UploadKey::parse`].
    pub fn key(&self) -> Result<UploadKey, KeyError> {
        UploadKey::parse(self.key.as_deref().ok_or(KeyError::Missing)?)
    }

    /// The keys of an upload request, in order (`key=K1;K2;K3`).
    ///
    /// # Errors
    ///
    /// [`KeyError::Missing`] without a `key`, else the reasons of [`UploadKey::parse_batch`].
    pub fn keys(&self) -> Result<Vec<UploadKey>, KeyError> {
        UploadKey::parse_batch(self.key.as_deref().ok_or(KeyError::Missing)?)
    }

    /// The command, if one was given.
    ///
    /// # Errors
    ///
    /// [`QueryError::UnknownCommand`] for a command other than the three the widget uses.
    pub fn command(&self) -> Result<Option<Command>, QueryError> {
        self.command.as_deref().map(Command::parse).transpose()
    }
}

/// A command of the widget's protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    /// `command=status`: the upload's progress.
    Status,
    /// `command=cancel`: stop the upload.
    Cancel,
    /// `command=fileSize`: the size recorded by the iframe transport's size POST.
    FileSize,
}

impl Command {
    /// Parses a command name; ASCII case does not matter (`fileSize`, `filesize`).
    ///
    /// # Errors
    ///
    /// [`QueryError::UnknownCommand`] for anything else.
    pub fn parse(name: &str) -> Result<Self, QueryError> {
        if name.eq_ignore_ascii_case("status") {
            Ok(Self::Status)
        } else if name.eq_ignore_ascii_case("cancel") {
            Ok(Self::Cancel)
        } else if name.eq_ignore_ascii_case("filesize") {
            Ok(Self::FileSize)
        } else {
            Err(QueryError::UnknownCommand(truncate(name, 64).into_owned()))
        }
    }

    /// The name the widget sends.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Cancel => "cancel",
            Self::FileSize => "fileSize",
        }
    }
}

fn truncate(text: &str, max_chars: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => Cow::Owned(format!("{}...", &text[..end])),
        None => Cow::Borrowed(text),
    }
}

/// Why a query string was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueryError {
    /// A parameter that must appear once appeared twice.
    Repeated(&'static str),
    /// The command is not `status`, `cancel` or `fileSize` (shown shortened).
    UnknownCommand(String),
    /// A parameter is longer than its bound.
    TooLong {
        /// The parameter's name.
        name: &'static str,
        /// Its most bytes (percent-decoded).
        max: usize,
    },
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Repeated(name) => {
                write!(f, "the `{name}` query parameter appears more than once")
            }
            Self::UnknownCommand(name) => write!(
                f,
                "unknown command {name:?}; expected `status`, `cancel` or `fileSize`"
            ),
            Self::TooLong { name, max } => {
                write!(f, "the `{name}` query parameter is longer than {max} bytes")
            }
        }
    }
}

impl std::error::Error for QueryError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_widget_queries() {
        let query = UploadQuery::parse("key=abc&cid=&multiple=true").unwrap();
        assert_eq!(query.key().unwrap().as_str(), "abc");
        assert_eq!(query.cid, None);
        assert_eq!(query.command().unwrap(), None);
        let query = UploadQuery::parse("key=a;b&cid=uploader1").unwrap();
        assert_eq!(query.keys().unwrap().len(), 2);
        assert_eq!(query.cid.as_deref(), Some("uploader1"));
        for (text, command) in [
            ("status", Command::Status),
            ("cancel", Command::Cancel),
            ("fileSize", Command::FileSize),
            ("FILESIZE", Command::FileSize),
        ] {
            let text = format!("command={text}&key=k&_=123");
            let query = UploadQuery::parse(&text).unwrap();
            assert_eq!(query.command().unwrap(), Some(command));
        }
    }

    #[test]
    fn a_cid_is_at_most_128_bytes() {
        let ok = format!("key=k&cid={}", "c".repeat(128));
        assert_eq!(UploadQuery::parse(&ok).unwrap().cid.unwrap().len(), 128);
        let long = format!("key=k&cid={}", "c".repeat(129));
        let error = UploadQuery::parse(&long).unwrap_err();
        assert_eq!(
            error,
            QueryError::TooLong {
                name: "cid",
                max: 128
            }
        );
        assert_eq!(
            error.to_string(),
            "the `cid` query parameter is longer than 128 bytes"
        );
        // Decoded bytes count: 43 three-byte characters, percent-encoded.
        let encoded = format!("key=k&cid={}", "%E2%82%AC".repeat(43));
        assert!(UploadQuery::parse(&encoded).is_err());
    }

    #[test]
    fn percent_decoding_applies_before_validation() {
        let query = UploadQuery::parse("key=a%3Bb").unwrap();
        assert_eq!(query.keys().unwrap().len(), 2);
        let query = UploadQuery::parse("key=%2E%2E%2Fetc").unwrap();
        assert!(matches!(
            query.key(),
            Err(KeyError::InvalidChar { ch: '/', .. })
        ));
        let query = UploadQuery::parse("key=%zz").unwrap();
        assert!(query.key().is_err());
        let query = UploadQuery::parse("key=a+b").unwrap();
        assert!(matches!(
            query.key(),
            Err(KeyError::InvalidChar { ch: ' ', .. })
        ));
    }

    #[test]
    fn refuses_repeats_unknown_commands_and_missing_keys() {
        assert_eq!(
            UploadQuery::parse("key=a&key=b"),
            Err(QueryError::Repeated("key"))
        );
        assert_eq!(
            UploadQuery::parse("command=status&command=cancel"),
            Err(QueryError::Repeated("command"))
        );
        let long = format!("command={}", "x".repeat(1000));
        let query = UploadQuery::parse(&long).unwrap();
        match query.command() {
            Err(QueryError::UnknownCommand(shown)) => assert!(shown.len() < 80),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            UploadQuery::parse("").unwrap().key(),
            Err(KeyError::Missing)
        );
        assert_eq!(
            UploadQuery::parse("key=").unwrap().key(),
            Err(KeyError::Empty)
        );
    }
}
