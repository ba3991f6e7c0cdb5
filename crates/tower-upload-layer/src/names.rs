//! Turning a client's file name into one safe path component.

use std::fmt;
use std::path::{Component, Path};

/// The longest final file name in bytes, leaving room under the usual 255-byte limit for a
/// ` (12345)` suffix.
pub(crate) const MAX_NAME_BYTES: usize = 200;

/// Why a client's file name cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NameError {
    /// Nothing usable is left after removing paths and unsafe characters.
    Empty,
    /// The result is not one plain path component (a last-line check that should never
    /// fire: it guards the rules above, in release builds too).
    NotOneComponent,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("the file name is empty or has no usable characters"),
            Self::NotOneComponent => f.write_str("the file name is not one plain path component"),
        }
    }
}

/// Makes `raw` a single normal path component that is safe on Linux, macOS and Windows.
///
/// - Only the last path segment counts: browsers of old sent `C:\Users\x\a.txt`, and an
///   attacker sends `../../etc/passwd`; both separators, `/` and `\`, split.
/// - Control characters (NUL included) and invisible Unicode characters (bidi overrides such
///   as U+202E, zero-width characters, line and paragraph separators, tag characters,
///   variation selectors, Hangul fillers) are removed; characters Windows forbids
///   (`<>:"|?*`) become `_`.
/// - Leading and trailing dots and spaces are trimmed (`..`, `.bashrc` hidden files, Windows'
///   trailing-dot aliasing); Windows device names (`CON`, `nul.txt`, `COM1`, `LPT¹`) get a
///   `_` prefix.
/// - The name is cut to [`MAX_NAME_BYTES`], keeping its extension.
/// - Last, the result is checked to be one normal path component, in release builds too.
pub(crate) fn sanitize_file_name(raw: &str) -> Result<String, NameError> {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
    let mut name: String = last
        .chars()
        .filter(|&c| !c.is_control() && !is_format_char(c))
        .map(|c| match c {
            '<' | '>' | ':' | '"' | '|' | '?' | '*' => '_',
            c => c,
        })
        .collect();
    let trimmed = name.trim_matches(|c: char| c == '.' || c.is_whitespace());
    if trimmed.is_empty() {
        return Err(NameError::Empty);
    }
    if trimmed.len() != name.len() {
        name = trimmed.to_owned();
    }
    if is_windows_device_name(&name) {
        name.insert(0, '_');
    }
    single_component(truncate_keeping_extension(name, MAX_NAME_BYTES))
}

/// `name` if it is one normal path component, else [`NameError::NotOneComponent`].
fn single_component(name: String) -> Result<String, NameError> {
    if is_single_normal_component(&name) {
        Ok(name)
    } else {
        Err(NameError::NotOneComponent)
    }
}

/// Invisible characters that can disguise a name: Unicode "format" characters (category Cf:
/// bidi controls, zero-width characters, the BOM, soft hyphen, tag characters), the line and
/// paragraph separators, variation selectors, and the Hangul fillers that render as blanks.
fn is_format_char(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{E0000}'..='\u{E007F}'
            | '\u{E0100}'..='\u{E01EF}'
    )
}

/// `CON`, `PRN`, `AUX`, `NUL`, `CONIN$`, `CONOUT$`, and `COM`/`LPT` followed by a digit or a
/// superscript 1, 2 or 3 (Windows reserves `COM¹` too), with or without an extension.
fn is_windows_device_name(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or(name).trim_end();
    let upper = stem.to_ascii_uppercase();
    if matches!(
        upper.as_str(),
        "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$"
    ) {
        return true;
    }
    let Some(number) = upper
        .strip_prefix("COM")
        .or_else(|| upper.strip_prefix("LPT"))
    else {
        return false;
    };
    let mut chars = number.chars();
    matches!(
        (chars.next(), chars.next()),
        (Some('0'..='9' | '\u{B9}' | '\u{B2}' | '\u{B3}'), None)
    )
}

fn truncate_keeping_extension(name: String, max: usize) -> String {
    if name.len() <= max {
        return name;
    }
    let (stem, extension) = match name.rfind('.') {
        // An extension longer than a quarter of the budget is not worth keeping whole.
        Some(dot) if dot > 0 && name.len() - dot <= max / 4 => name.split_at(dot),
        _ => (name.as_str(), ""),
    };
    let mut end = max - extension.len();
    while !stem.is_char_boundary(end) {
        end -= 1;
    }
    let stem = stem[..end].trim_end_matches(|c: char| c == '.' || c.is_whitespace());
    format!("{stem}{extension}")
}

/// Whether `name`, as a whole, is one normal path component on every platform: no
/// separator of any of them, no NUL, and not `.` or `..` (`a/` or `a/.` would pass a
/// component count, since paths drop trailing separators and `.`).
pub(crate) fn is_single_normal_component(name: &str) -> bool {
    let mut components = Path::new(name).components();
    matches!(components.next(), Some(Component::Normal(first)) if first == name)
        && components.next().is_none()
        && !name.contains(['/', '\\', '\0'])
}

/// The `n`-th alternative of `name` for the unique-suffix policy: `a (1).txt`.
pub(crate) fn numbered(name: &str, n: u32) -> String {
    match name.rfind('.') {
        Some(dot) if dot > 0 => format!("{} ({n}){}", &name[..dot], &name[dot..]),
        _ => format!("{name} ({n})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_ordinary_names() {
        for name in [
            "report.pdf",
            "photo 2024.JPG",
            "données.csv",
            "日本語.txt",
            "a",
        ] {
            assert_eq!(sanitize_file_name(name).unwrap(), name);
        }
    }

    #[test]
    fn strips_paths_of_every_flavour() {
        let cases = [
            ("../../etc/passwd", "passwd"),
            ("/etc/passwd", "passwd"),
            ("C:\\Users\\me\\a.txt", "a.txt"),
            ("C:a.txt", "C_a.txt"),
            ("..\\..\\boot.ini", "boot.ini"),
            ("dir/", ""),
        ];
        for (raw, expected) in cases {
            match sanitize_file_name(raw) {
                Ok(name) => assert_eq!(name, expected, "{raw:?}"),
                Err(error) => assert_eq!((error, expected), (NameError::Empty, ""), "{raw:?}"),
            }
        }
    }

    #[test]
    fn rejects_names_with_nothing_left() {
        for raw in [
            "", ".", "..", "...", "   ", "/", "a/..", "\u{202E}", "\0", ". .",
        ] {
            assert_eq!(sanitize_file_name(raw), Err(NameError::Empty), "{raw:?}");
        }
    }

    #[test]
    fn neutralises_control_format_and_reserved_characters() {
        assert_eq!(sanitize_file_name("a\0b.txt").unwrap(), "ab.txt");
        assert_eq!(
            sanitize_file_name("evil\u{202E}gpj.exe").unwrap(),
            "evilgpj.exe"
        );
        assert_eq!(
            sanitize_file_name("zero\u{200B}width").unwrap(),
            "zerowidth"
        );
        assert_eq!(
            sanitize_file_name("a<b>c:d\"e|f?g*h").unwrap(),
            "a_b_c_d_e_f_g_h"
        );
        assert_eq!(sanitize_file_name("line\r\nbreak").unwrap(), "linebreak");
        assert_eq!(sanitize_file_name(".bashrc").unwrap(), "bashrc");
        assert_eq!(sanitize_file_name("trailing. . ").unwrap(), "trailing");
    }

    #[test]
    fn prefixes_windows_device_names() {
        for (raw, expected) in [
            ("CON", "_CON"),
            ("nul.txt", "_nul.txt"),
            ("com1", "_com1"),
            ("LPT9.log", "_LPT9.log"),
            ("console", "console"),
            ("COM10", "COM10"),
        ] {
            assert_eq!(sanitize_file_name(raw).unwrap(), expected, "{raw:?}");
        }
    }

    #[test]
    fn long_names_are_cut_on_char_boundaries_keeping_the_extension() {
        let long = format!("{}.tar", "é".repeat(5_000));
        let name = sanitize_file_name(&long).unwrap();
        assert!(name.len() <= MAX_NAME_BYTES, "{}", name.len());
        assert!(name.ends_with(".tar"));
        let no_extension = "x".repeat(10_000);
        assert_eq!(
            sanitize_file_name(&no_extension).unwrap().len(),
            MAX_NAME_BYTES
        );
        let huge_extension = format!("a.{}", "y".repeat(1_000));
        assert!(sanitize_file_name(&huge_extension).unwrap().len() <= MAX_NAME_BYTES);
    }

    #[test]
    fn every_result_is_one_normal_component() {
        let nasty = [
            "a/b/c",
            "..",
            "./x",
            "x/.",
            "\\\\server\\share\\f",
            "~/x",
            "$HOME",
            "a\u{0}/b",
            "..\u{202E}/x",
            "%2e%2e%2fetc",
            "con.",
            " ",
            "x:\\y",
        ];
        for raw in nasty {
            if let Ok(name) = sanitize_file_name(raw) {
                assert!(is_single_normal_component(&name), "{raw:?} -> {name:?}");
                assert!(!name.contains(['/', '\\', '\0']), "{raw:?} -> {name:?}");
            }
        }
    }

    #[test]
    fn numbered_alternatives() {
        assert_eq!(numbered("a.txt", 1), "a (1).txt");
        assert_eq!(numbered("archive.tar.gz", 2), "archive.tar (2).gz");
        assert_eq!(numbered("README", 3), "README (3)");
    }

    #[test]
    fn removes_invisible_separators_tags_selectors_and_fillers() {
        for (raw, expected) in [
            ("a\u{2028}b\u{2029}.txt", "ab.txt"),
            // Tag characters: an invisible "exe" spelled in tags.
            (
                "doc\u{E0001}\u{E0065}\u{E0078}\u{E0065}\u{E007F}.pdf",
                "doc.pdf",
            ),
            ("a\u{FE0F}b\u{FE00}.txt", "ab.txt"),
            ("a\u{E0100}b\u{E01EF}.txt", "ab.txt"),
            ("\u{3164}x\u{115F}y\u{1160}z\u{FFA0}.txt", "xyz.txt"),
        ] {
            assert_eq!(sanitize_file_name(raw).unwrap(), expected, "{raw:?}");
        }
        for raw in [
            "\u{3164}",
            "\u{2028}.\u{2029}",
            "\u{E0020}\u{FE0F}",
            "\u{FFA0}\u{115F}",
        ] {
            assert_eq!(sanitize_file_name(raw), Err(NameError::Empty), "{raw:?}");
        }
    }

    #[test]
    fn superscript_digits_make_windows_device_names_too() {
        for (raw, expected) in [
            ("COM\u{B9}", "_COM\u{B9}"),
            ("com\u{B2}.txt", "_com\u{B2}.txt"),
            ("LPT\u{B3}.log", "_LPT\u{B3}.log"),
            ("lpt\u{B9}", "_lpt\u{B9}"),
            ("COM\u{B9}\u{B2}", "COM\u{B9}\u{B2}"),
            ("COM\u{2074}", "COM\u{2074}"),
        ] {
            assert_eq!(sanitize_file_name(raw).unwrap(), expected, "{raw:?}");
        }
    }

    #[test]
    fn the_final_check_refuses_anything_but_one_normal_component() {
        for bad in [
            "", ".", "..", "a/b", "/a", "a/", "./a", "a/.", "a\\b", "a\0",
        ] {
            assert_eq!(
                single_component(bad.to_owned()),
                Err(NameError::NotOneComponent),
                "{bad:?}"
            );
        }
        assert_eq!(single_component("a.txt".to_owned()), Ok("a.txt".to_owned()));
        assert_eq!(
            NameError::NotOneComponent.to_string(),
            "the file name is not one plain path component"
        );
    }
}
