//! Upload keys: the client-chosen identifiers that tie an upload POST to its status queries.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// The longest key [`UploadKey::parse`] accepts, in bytes.
pub const MAX_KEY_LEN: usize = 128;
/// The length of the keys [`UploadKey::generate`] makes (as the igUpload widget's own).
pub const GENERATED_KEY_LEN: usize = 30;

/// The most keys one `key=K1;K2;...` batch may name.
///
/// The widget sends one key per file of a `useSingleRequest` upload; a request naming more keys
/// than this is refused before anything is registered, so a long query string cannot make the
/// server allocate thousands of keys.
pub const MAX_BATCH_KEYS: usize = 256;

/// A validated upload key.
///
/// The igUpload widget makes a key of 30 random alphanumerics for every file and sends it as
/// `?key=K` on the upload POST and on every status query. A key here is 1 to
/// [`MAX_KEY_LEN`] characters from `[A-Za-z0-9_.-]`, which rules out anything that could
/// mean something in a path, a header or a Redis key pattern.
///
/// Cloning is cheap (a reference count).
///
/// # Example
///
/// ```
/// use tower_upload_state::UploadKey;
///
/// let key: UploadKey = "a1B2c3".parse()?;
/// assert_eq!(key.as_str(), "a1B2c3");
/// assert!(UploadKey::parse("../etc").is_err());
///
/// let batch = UploadKey::parse_batch("k1;k2;k3")?;
/// assert_eq!(batch.len(), 3);
/// # Ok::<(), tower_upload_state::KeyError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UploadKey(Arc<str>);

impl UploadKey {
    /// Validates `key` and makes an [`UploadKey`] of it.
    ///
    /// # Errors
    ///
    /// [`KeyError::Empty`], [`KeyError::TooLong`] or [`KeyError::InvalidChar`].
    pub fn parse(key: &str) -> Result<Self, KeyError> {
        validate(key)?;
        Ok(Self(Arc::from(key)))
    }

    /// A new, unguessable key: [`GENERATED_KEY_LEN`] characters of `[A-Za-z0-9]` from the
    /// operating system's random source (about 178 bits), the shape the igUpload widget
    /// makes on its side. Keys are bearer tokens for status and cancel queries, so they must
    /// not be predictable.
    ///
    /// # Panics
    ///
    /// If the operating system has no random source to offer (never on the supported
    /// platforms).
    ///
    /// ```
    /// use tower_upload_state::{UploadKey, GENERATED_KEY_LEN};
    ///
    /// let key = UploadKey::generate();
    /// assert_eq!(key.as_str().len(), GENERATED_KEY_LEN);
    /// assert!(key.as_str().bytes().all(|b| b.is_ascii_alphanumeric()));
    /// assert_ne!(key, UploadKey::generate());
    /// ```
    #[must_use]
    pub fn generate() -> Self {
        const ALPHABET: &[u8; 62] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut key = String::with_capacity(GENERATED_KEY_LEN);
        let mut random = [0u8; 64];
        while key.len() < GENERATED_KEY_LEN {
            getrandom::fill(&mut random).expect("the operating system's random source");
            // 248 = 4 x 62: bytes below it map onto the alphabet without bias.
            for &byte in random.iter().filter(|&&byte| byte < 248) {
                if key.len() == GENERATED_KEY_LEN {
                    break;
                }
                key.push(char::from(ALPHABET[usize::from(byte % 62)]));
            }
        }
        Self(Arc::from(key))
    }

    /// Checks `key` as [`parse`](Self::parse) does, without making a key of it (no
    /// allocation): for lookups by `&str`, e.g. [`UploadRegistry::inspect_for`](crate::UploadRegistry::inspect_for).
    ///
    /// # Errors
    ///
    /// The errors of [`parse`](Self::parse).
    pub fn check(key: &str) -> Result<(), KeyError> {
        validate(key)
    }

    /// Parses the widget's batch form `K1;K2;K3` (sent with `useSingleRequest`), in order.
    ///
    /// A single key is a batch of one.
    ///
    /// # Errors
    ///
    /// Any error of [`UploadKey::parse`] for one of the keys, [`KeyError::EmptyInBatch`] for
    /// `a;;b` or a trailing `;`, [`KeyError::DuplicateInBatch`] when a key repeats, and
    /// [`KeyError::TooManyInBatch`] past [`MAX_BATCH_KEYS`].
    pub fn parse_batch(keys: &str) -> Result<Vec<Self>, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        let count = keys.bytes().filter(|&b| b == b';').count() + 1;
        if count > MAX_BATCH_KEYS {
            return Err(KeyError::TooManyInBatch {
                count,
                max: MAX_BATCH_KEYS,
            });
        }
        let mut batch: Vec<Self> = Vec::with_capacity(count);
        for (position, part) in keys.split(';').enumerate() {
            if part.is_empty() {
                return Err(KeyError::EmptyInBatch { position });
            }
            let key = Self::parse(part)?;
            // Batches are small (one key per file), so a linear scan beats hashing.
            if batch.contains(&key) {
                return Err(KeyError::DuplicateInBatch { key });
            }
            batch.push(key);
        }
        Ok(batch)
    }

    /// The key as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn validate(key: &str) -> Result<(), KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(KeyError::TooLong {
            len: key.len(),
            max: MAX_KEY_LEN,
        });
    }
    // The common case, a valid key, byte by byte; the position of a bad character (which
    // may be a multi-byte one) is then found by characters.
    if key
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-'))
    {
        return Ok(());
    }
    match key.char_indices().find(|&(_, c)| !is_key_char(c)) {
        Some((position, ch)) => Err(KeyError::InvalidChar { ch, position }),
        None => Ok(()),
    }
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

impl FromStr for UploadKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<&str> for UploadKey {
    type Error = KeyError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl AsRef<str> for UploadKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for UploadKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UploadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UploadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl serde::Serialize for UploadKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for UploadKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Why a key (or a `;` batch of keys) was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The request had no `key` parameter.
    Missing,
    /// The key is empty.
    Empty,
    /// The key is longer than [`MAX_KEY_LEN`].
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The key has a character outside `[A-Za-z0-9_.-]`.
    InvalidChar {
        /// The first such character.
        ch: char,
        /// Its byte offset in the key.
        position: usize,
    },
    /// A `;` batch has an empty key (`a;;b`, or a leading or trailing `;`).
    EmptyInBatch {
        /// The 0-based index of the empty key.
        position: usize,
    },
    /// A `;` batch names the same key twice.
    DuplicateInBatch {
        /// The repeated key.
        key: UploadKey,
    },
    /// A `;` batch names more than [`MAX_BATCH_KEYS`] keys.
    TooManyInBatch {
        /// How many it names.
        count: usize,
        /// The limit.
        max: usize,
    },
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("the `key` query parameter is missing"),
            Self::Empty => f.write_str("the upload key is empty"),
            Self::TooLong { len, max } => {
                write!(f, "the upload key is {len} bytes long; at most {max} are allowed")
            }
            Self::InvalidChar { ch, position } => write!(
                f,
                "the upload key has {ch:?} at byte {position}; only A-Z, a-z, 0-9, '_', '.' and '-' are allowed"
            ),
            Self::EmptyInBatch { position } => {
                write!(f, "key number {} of the `;` batch is empty", position + 1)
            }
            Self::DuplicateInBatch { key } => {
                write!(f, "the key {key} appears twice in the `;` batch")
            }
            Self::TooManyInBatch { count, max } => {
                write!(f, "the `;` batch names {count} keys; at most {max} are allowed")
            }
        }
    }
}

impl std::error::Error for KeyError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_widget_keys_and_the_allowed_punctuation() {
        let widget = "aZ09bY18cX27dW36eV45fU54gT63hS";
        assert_eq!(widget.len(), 30);
        assert_eq!(UploadKey::parse(widget).unwrap().as_str(), widget);
        assert!(UploadKey::parse("a_b.c-d").is_ok());
        assert!(UploadKey::parse(&"k".repeat(MAX_KEY_LEN)).is_ok());
    }

    #[test]
    fn refuses_bad_keys_with_a_reason() {
        assert_eq!(UploadKey::parse(""), Err(KeyError::Empty));
        assert_eq!(
            UploadKey::parse(&"k".repeat(MAX_KEY_LEN + 1)),
            Err(KeyError::TooLong {
                len: MAX_KEY_LEN + 1,
                max: MAX_KEY_LEN
            })
        );
        for (bad, ch, position) in [
            ("../x", '/', 2),
            ("a b", ' ', 1),
            ("a;b", ';', 1),
            ("ké", 'é', 1),
            ("a\0", '\0', 1),
            ("*", '*', 0),
        ] {
            assert_eq!(
                UploadKey::parse(bad),
                Err(KeyError::InvalidChar { ch, position }),
                "{bad:?}"
            );
        }
        let message = UploadKey::parse("a/b").unwrap_err().to_string();
        assert!(message.contains("'/'"), "{message}");
    }

    #[test]
    fn parses_batches_in_order() {
        let batch = UploadKey::parse_batch("k1;k2;k3").unwrap();
        let keys: Vec<&str> = batch.iter().map(UploadKey::as_str).collect();
        assert_eq!(keys, ["k1", "k2", "k3"]);
        assert_eq!(UploadKey::parse_batch("solo").unwrap().len(), 1);
    }

    #[test]
    fn refuses_bad_batches() {
        assert_eq!(UploadKey::parse_batch(""), Err(KeyError::Empty));
        assert_eq!(
            UploadKey::parse_batch("a;;b"),
            Err(KeyError::EmptyInBatch { position: 1 })
        );
        assert_eq!(
            UploadKey::parse_batch("a;b;"),
            Err(KeyError::EmptyInBatch { position: 2 })
        );
        assert_eq!(
            UploadKey::parse_batch(";a"),
            Err(KeyError::EmptyInBatch { position: 0 })
        );
        assert_eq!(
            UploadKey::parse_batch("a;b;a"),
            Err(KeyError::DuplicateInBatch {
                key: UploadKey::parse("a").unwrap()
            })
        );
        let many = vec!["k"; MAX_BATCH_KEYS + 1].join(";");
        assert!(matches!(
            UploadKey::parse_batch(&many),
            Err(KeyError::TooManyInBatch { .. })
        ));
        assert!(matches!(
            UploadKey::parse_batch("ok;b/d"),
            Err(KeyError::InvalidChar { ch: '/', .. })
        ));
    }

    #[test]
    fn serde_round_trip_validates() {
        let key = UploadKey::parse("abc").unwrap();
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(json, "\"abc\"");
        assert_eq!(serde_json::from_str::<UploadKey>(&json).unwrap(), key);
        assert!(serde_json::from_str::<UploadKey>("\"a/b\"").is_err());
    }
}
