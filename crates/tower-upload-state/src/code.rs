//! The status and error codes of the igUpload wire protocol.
//!
//! The numbers are the wire format: they are what the widget reads from the JSON answers, so
//! both enums serialise as plain numbers.

use std::fmt;

macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident : $repr:ty {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr($repr)]
        pub enum $name {
            $( $(#[$vmeta])* $variant = $value, )+
        }

        impl $name {
            /// Every value, in wire-code order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The wire code.
            #[must_use]
            pub const fn code(self) -> $repr {
                self as $repr
            }

            /// The value with wire code `code`, if there is one.
            #[must_use]
            pub const fn from_code(code: $repr) -> Option<Self> {
                match code {
                    $( $value => Some(Self::$variant), )+
                    _ => None,
                }
            }

            /// The name igUpload gives this code, e.g. `"FileSizeExceeded"`.
            #[must_use]
            pub const fn name(self) -> &'static str {
                match self {
                    $( Self::$variant => stringify!($variant), )+
                }
            }

            /// A short human-readable description.
            #[must_use]
            pub const fn description(self) -> &'static str {
                match self {
                    $( Self::$variant => $text, )+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{} ({})", self.name(), self.code())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serde::Serialize::serialize(&self.code(), serializer)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let code = <$repr as serde::Deserialize>::deserialize(deserializer)?;
                Self::from_code(code).ok_or_else(|| {
                    serde::de::Error::custom(format_args!(
                        "{} is not a valid {} code",
                        code,
                        stringify!($name)
                    ))
                })
            }
        }
    };
}

wire_enum! {
    /// Where an upload is in its lifecycle: `0 -> 1 -> 9 -> 2`, or one terminal failure.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_upload_state::UploadStatus;
    ///
    /// assert_eq!(UploadStatus::FileSizeExceeded.code(), 5);
    /// assert_eq!(UploadStatus::from_code(2), Some(UploadStatus::Finished));
    /// assert_eq!(serde_json::to_string(&UploadStatus::Started)?, "1");
    /// assert!(UploadStatus::FileSizeExceeded.is_rejection());
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub enum UploadStatus: u8 {
        /// Registered; no byte of the file read yet.
        NotStarted = 0 => "the upload has not started",
        /// Bytes are streaming in.
        Started = 1 => "the upload is in progress",
        /// Stored under its final name.
        Finished = 2 => "the upload finished",
        /// The key is unknown (never registered, or its record expired).
        NoSuchFile = 3 => "no upload with this key",
        /// Canceled with `command=cancel`.
        CanceledByClientCommand = 4 => "the upload was canceled by the client",
        /// The file is larger than the size limit.
        FileSizeExceeded = 5 => "the file is too large",
        /// An I/O or parse failure ended the upload.
        ErrorUploading = 6 => "the upload failed",
        /// An event handler vetoed the upload.
        CanceledByEvent = 7 => "the upload was refused by the server",
        /// The client disconnected before the upload finished.
        CanceledByClientConnection = 8 => "the client disconnected",
        /// All bytes are in, under the temporary name; finishing work runs.
        UploadFinishing = 9 => "the upload is finishing",
    }
}

impl UploadStatus {
    /// Whether the upload is over (finished, canceled or failed). Terminal records stay
    /// queryable for the registry's retention and then expire.
    ///
    /// [`NoSuchFile`](Self::NoSuchFile) is an answer, never a stored state, and is not
    /// terminal.
    #[must_use]
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Finished
                | Self::CanceledByClientCommand
                | Self::FileSizeExceeded
                | Self::ErrorUploading
                | Self::CanceledByEvent
                | Self::CanceledByClientConnection
        )
    }

    /// Whether the upload is registered and not over yet (0, 1 or 9).
    #[must_use]
    pub const fn is_in_flight(self) -> bool {
        matches!(
            self,
            Self::NotStarted | Self::Started | Self::UploadFinishing
        )
    }

    /// Whether this is a terminal verdict against the upload (4, 5, 6 or 7).
    ///
    /// Not every rejection is replayed: Chromium re-sends the same POST when the server hangs
    /// up mid-body, and a key whose upload ended in a *client-caused* verdict answers such a
    /// repeat with the same verdict at once, while one that failed on the server's side
    /// (status 6 with a disk or folder error) lets the retry start over. The rule, which
    /// needs the error code as well, is [`UploadInfo::is_replayed_verdict`](crate::UploadInfo::is_replayed_verdict).
    #[must_use]
    pub const fn is_rejection(self) -> bool {
        matches!(
            self,
            Self::CanceledByClientCommand
                | Self::FileSizeExceeded
                | Self::ErrorUploading
                | Self::CanceledByEvent
        )
    }
}

/// Whether an upload that ended with `status` and `error` answers a repeated POST of its key
/// with the same verdict (see [`UploadInfo::is_replayed_verdict`](crate::UploadInfo::is_replayed_verdict)).
///
/// The one place of this rule: the memory store calls it, and the Redis store's claim script
/// mirrors it (`CLAIM` in `redis.rs`); change both together.
pub(crate) const fn replays_verdict(status: UploadStatus, error: FileError) -> bool {
    match status {
        // Asked for by the client, too large, vetoed by the application: the same request
        // gets the same answer.
        UploadStatus::CanceledByClientCommand
        | UploadStatus::FileSizeExceeded
        | UploadStatus::CanceledByEvent => true,
        // Only what the request itself got wrong; a server-side failure (folder, disk,
        // rename) may be gone by the retry.
        UploadStatus::ErrorUploading => matches!(
            error,
            FileError::EstablishingFileName
                | FileError::MimeTypeValidation
                | FileError::HeaderParsing
        ),
        _ => false,
    }
}

wire_enum! {
    /// Why an upload failed; `None` (-1) when it did not.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_upload_state::FileError;
    ///
    /// assert_eq!(FileError::None.code(), -1);
    /// assert_eq!(serde_json::to_string(&FileError::FileSizeExceeded)?, "2");
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub enum FileError: i8 {
        /// No error.
        None = -1 => "no error",
        /// The part has no file name, or one that cannot be used.
        EstablishingFileName = 0 => "the file name is missing or invalid",
        /// The file's type is not allowed (declared or sniffed).
        MimeTypeValidation = 1 => "the file type is not allowed",
        /// The file is larger than the size limit.
        FileSizeExceeded = 2 => "the file is too large",
        /// The upload or temp directory is missing and cannot be created.
        UploadFolderNotFound = 3 => "the upload folder is missing",
        /// The multipart body or its headers could not be parsed.
        HeaderParsing = 4 => "the request could not be parsed",
        /// The key is unknown.
        KeyFileNotFound = 5 => "no upload with this key",
        /// Moving the file to its final name failed.
        FileSaving = 6 => "the file could not be saved",
        /// Writing the file failed.
        FileWriting = 7 => "the file could not be written",
        /// Creating the file or writing its first bytes failed.
        FileStarting = 8 => "the file could not be created",
        /// Deleting the file failed.
        FileDeleting = 9 => "the file could not be deleted",
        /// A server-side event handler vetoed the upload.
        ServerSideCancel = 10 => "the upload was refused by the server",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_numbers_match_igupload() {
        let statuses: Vec<(u8, &str)> = UploadStatus::ALL
            .iter()
            .map(|s| (s.code(), s.name()))
            .collect();
        assert_eq!(
            statuses,
            [
                (0, "NotStarted"),
                (1, "Started"),
                (2, "Finished"),
                (3, "NoSuchFile"),
                (4, "CanceledByClientCommand"),
                (5, "FileSizeExceeded"),
                (6, "ErrorUploading"),
                (7, "CanceledByEvent"),
                (8, "CanceledByClientConnection"),
                (9, "UploadFinishing"),
            ]
        );
        let errors: Vec<(i8, &str)> = FileError::ALL
            .iter()
            .map(|e| (e.code(), e.name()))
            .collect();
        assert_eq!(
            errors,
            [
                (-1, "None"),
                (0, "EstablishingFileName"),
                (1, "MimeTypeValidation"),
                (2, "FileSizeExceeded"),
                (3, "UploadFolderNotFound"),
                (4, "HeaderParsing"),
                (5, "KeyFileNotFound"),
                (6, "FileSaving"),
                (7, "FileWriting"),
                (8, "FileStarting"),
                (9, "FileDeleting"),
                (10, "ServerSideCancel"),
            ]
        );
    }

    #[test]
    fn codes_round_trip_through_json_numbers() {
        for &status in UploadStatus::ALL {
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, status.code().to_string());
            assert_eq!(serde_json::from_str::<UploadStatus>(&json).unwrap(), status);
        }
        for &error in FileError::ALL {
            let json = serde_json::to_string(&error).unwrap();
            assert_eq!(json, error.code().to_string());
            assert_eq!(serde_json::from_str::<FileError>(&json).unwrap(), error);
        }
        assert!(serde_json::from_str::<UploadStatus>("10").is_err());
        assert!(serde_json::from_str::<FileError>("-2").is_err());
        assert_eq!(UploadStatus::from_code(10), None);
        assert_eq!(FileError::from_code(11), None);
    }

    #[test]
    fn lifecycle_classes_partition_the_stored_states() {
        for &status in UploadStatus::ALL {
            let stored = status != UploadStatus::NoSuchFile;
            assert_eq!(
                status.is_terminal() ^ status.is_in_flight(),
                stored,
                "{status}"
            );
            if status.is_rejection() {
                assert!(status.is_terminal(), "{status}");
            }
        }
        assert!(!UploadStatus::Finished.is_rejection());
        assert!(!UploadStatus::CanceledByClientConnection.is_rejection());
    }
}
