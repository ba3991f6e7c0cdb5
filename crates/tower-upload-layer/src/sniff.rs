//! Recognising a file's type from its first bytes, so that a declared MIME type cannot smuggle
//! in another kind of file.

use crate::config::MimeFilter;

/// How many leading bytes the sniffer looks at.
pub(crate) const SNIFF_LEN: usize = 512;

/// Magic numbers: (offset, bytes, MIME type).
const SIGNATURES: &[(usize, &[u8], &str)] = &[
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (8, b"WEBP", "image/webp"),
    (0, b"II*\0", "image/tiff"),
    (0, b"MM\0*", "image/tiff"),
    (0, b"%PDF-", "application/pdf"),
    (0, b"PK\x03\x04", "application/zip"),
    (0, b"\x1f\x8b", "application/gzip"),
    (0, b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (0, b"Rar!\x1a\x07", "application/vnd.rar"),
    (0, b"MZ", "application/x-msdownload"),
    (0, b"\x7fELF", "application/x-executable"),
    (0, b"\xca\xfe\xba\xbe", "application/java-vm"),
    (0, b"ID3", "audio/mpeg"),
    (0, b"OggS", "audio/ogg"),
    (8, b"WAVE", "audio/wav"),
    (4, b"ftyp", "video/mp4"),
    (0, b"\x1a\x45\xdf\xa3", "video/webm"),
];

/// Text openings that make a browser render the file as a page or a script.
const MARKUP: &[(&str, &str)] = &[
    ("<!doctype html", "text/html"),
    ("<html", "text/html"),
    ("<script", "text/html"),
    ("<iframe", "text/html"),
    ("<svg", "image/svg+xml"),
    ("<?xml", "application/xml"),
    ("<!--", "text/html"),
];

/// The other HTML openings of the WHATWG MIME Sniffing standard (7.1): a tag name, then a
/// space or `>`.
const HTML_TAGS: &[&str] = &[
    "<head", "<h1", "<div", "<font", "<table", "<a", "<style", "<title", "<b", "<body", "<br", "<p",
];

/// Declared types whose files are ZIP archives underneath (office documents, Java and Android
/// archives, e-books): their content sniffs as `application/zip`.
fn is_zip_based(mime_type: &str) -> bool {
    let essence = crate::mime::essence(mime_type).to_ascii_lowercase();
    essence == "application/zip"
        || essence == "application/x-zip-compressed"
        || essence.starts_with("application/vnd.openxmlformats-officedocument.")
        || essence.starts_with("application/vnd.oasis.opendocument.")
        || essence == "application/java-archive"
        || essence == "application/epub+zip"
        || essence == "application/vnd.android.package-archive"
}

/// The type the first bytes of a file reveal, if they are a known signature.
pub(crate) fn sniff(head: &[u8]) -> Option<&'static str> {
    let binary = SIGNATURES
        .iter()
        .find(|(offset, magic, _)| head.get(*offset..offset + magic.len()) == Some(*magic));
    if let Some((_, _, mime_type)) = binary {
        return Some(mime_type);
    }
    let text = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    let start = text.iter().position(|b| !b.is_ascii_whitespace())?;
    let text = &text[start..];
    let opens = |opening: &str| {
        text.get(..opening.len())
            .is_some_and(|candidate| candidate.eq_ignore_ascii_case(opening.as_bytes()))
    };
    let markup = MARKUP
        .iter()
        .find_map(|(opening, mime_type)| opens(opening).then_some(*mime_type));
    markup.or_else(|| {
        HTML_TAGS
            .iter()
            .any(|tag| opens(tag) && matches!(text.get(tag.len()), Some(b' ' | b'>')))
            .then_some("text/html")
    })
}

/// Whether a file that `declared` a type and whose content sniffs as `sniffed` may pass
/// `filter`. Content the sniffer does not recognise is judged by its declared type alone.
pub(crate) fn content_allowed(filter: &MimeFilter, declared: &str, sniffed: Option<&str>) -> bool {
    match sniffed {
        None => true,
        Some(sniffed) if filter.allows(sniffed) => true,
        // An office document is a ZIP file: judge it by what it says it is.
        Some("application/zip") => is_zip_based(declared) && filter.allows(declared),
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_common_signatures() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), Some("image/png"));
        assert_eq!(sniff(b"\xff\xd8\xff\xe0\0\x10JFIF"), Some("image/jpeg"));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff(b"%PDF-1.7\n"), Some("application/pdf"));
        assert_eq!(sniff(b"MZ\x90\0\x03\0"), Some("application/x-msdownload"));
        assert_eq!(sniff(b"\x7fELF\x02\x01"), Some("application/x-executable"));
        assert_eq!(sniff(b"\0\0\0\x20ftypisom"), Some("video/mp4"));
        assert_eq!(sniff(b"  \n<!DOCTYPE html><html>"), Some("text/html"));
        assert_eq!(sniff(b"\xef\xbb\xbf<svg xmlns="), Some("image/svg+xml"));
        assert_eq!(sniff(b"<ScRiPt>alert(1)"), Some("text/html"));
        assert_eq!(sniff(b"just some text"), None);
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(b"M"), None);
    }

    #[test]
    fn judges_content_against_the_filter() {
        let images: MimeFilter = "image/*".parse().unwrap();
        assert!(content_allowed(&images, "image/png", Some("image/png")));
        assert!(
            content_allowed(&images, "image/png", Some("image/jpeg")),
            "a mislabelled image is still an image"
        );
        assert!(!content_allowed(
            &images,
            "image/png",
            Some("application/x-msdownload")
        ));
        assert!(!content_allowed(&images, "image/png", Some("text/html")));
        assert!(content_allowed(&images, "image/png", None));
        let documents: MimeFilter =
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
                .parse()
                .unwrap();
        let docx = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
        assert!(content_allowed(&documents, docx, Some("application/zip")));
        assert!(!content_allowed(
            &documents,
            docx,
            Some("application/x-msdownload")
        ));
        assert!(!content_allowed(
            &images,
            "image/png",
            Some("application/zip")
        ));
    }
}
