//! The status request's query, parsed without decoding when nothing needs it.

use std::borrow::Cow;

use tower_upload_state::{QueryError, UploadInfo, UploadQuery};

/// [`UploadQuery::parse`], with a fast path for the common query that has nothing encoded
/// in it (no `%`, no `+`): the pairs are then split in place, with no decoding pass, no
/// check for invalid UTF-8 and no allocation. The answers are the same either way (a unit
/// test compares them).
pub(crate) fn parse(raw: &str) -> Result<UploadQuery<'_>, QueryError> {
    if memchr::memchr2(b'%', b'+', raw.as_bytes()).is_some() {
        return UploadQuery::parse(raw);
    }
    let mut query = UploadQuery::default();
    let bytes = raw.as_bytes();
    let mut start = 0;
    while start < bytes.len() {
        let end = memchr::memchr(b'&', &bytes[start..]).map_or(bytes.len(), |at| start + at);
        // `&` and `=` are ASCII: these indices are character boundaries.
        let pair = &raw[start..end];
        start = end + 1;
        if pair.is_empty() {
            continue;
        }
        let (name, value) = match memchr::memchr(b'=', pair.as_bytes()) {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, ""),
        };
        let (slot, name) = match name {
            "key" => (&mut query.key, "key"),
            "command" => (&mut query.command, "command"),
            "cid" => (&mut query.cid, "cid"),
            _ => continue,
        };
        if slot.is_some() {
            return Err(QueryError::Repeated(name));
        }
        *slot = Some(Cow::Borrowed(value));
    }
    match query.cid.as_deref() {
        Some("") => query.cid = None,
        Some(cid) if cid.len() > UploadInfo::MAX_CID_LEN => {
            return Err(QueryError::TooLong {
                name: "cid",
                max: UploadInfo::MAX_CID_LEN,
            })
        }
        _ => {}
    }
    Ok(query)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_path_answers_as_the_full_parser() {
        let long_cid = format!("key=k&cid={}", "c".repeat(129));
        let cases = [
            "",
            "key=k&command=status",
            "key=k&command=status&_=1700000000",
            "_=1&cid=&multiple=true&command=status&key=ab-cd_9.z",
            "key=k&key=k",
            "command=a&command=b",
            "cid=a&cid=b&key=k",
            &long_cid,
            "key&command=",
            "&&key=k&&",
            "key=a;b&command=watch",
            "key==k",
            "x=1&y",
        ];
        for raw in cases {
            assert_eq!(parse(raw), UploadQuery::parse(raw), "{raw:?}");
        }
        // Encoded queries take the full parser.
        assert_eq!(parse("key=a%2Db").unwrap().key.as_deref(), Some("a-b"));
        assert_eq!(parse("key=a+b").unwrap().key.as_deref(), Some("a b"));
    }
}
