//! The multipart reader on any body, cut into any chunk sizes.
//!
//! Input: one byte `n`, then `n % 16` bytes of chunk sizes (each 1 to 256, used in turn),
//! then the body. Checked:
//! - the reader never panics, and never waits on the always-ready stream;
//! - the bodies of all parts together are never longer than the input;
//! - the result (parts or error) is the same however the body is cut: the body whole, cut as
//!   the input says, and a byte at a time (for short bodies);
//! - every file name is stored as one normal path component, or refused.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tower_upload_layer::__fuzz;

const BOUNDARY: &str = "XyZ";

fn cut(body: &[u8], sizes: &[u8]) -> Vec<Bytes> {
    if sizes.is_empty() {
        return vec![Bytes::copy_from_slice(body)];
    }
    let mut chunks = Vec::new();
    let mut rest = body;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(rest.len().min(usize::from(size) + 1));
        chunks.push(Bytes::copy_from_slice(chunk));
        rest = tail;
    }
    chunks
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 16).min(rest.len());
    let (sizes, body) = rest.split_at(n);

    let whole = __fuzz::read_multipart(vec![Bytes::copy_from_slice(body)], BOUNDARY);
    let chunked = __fuzz::read_multipart(cut(body, sizes), BOUNDARY);
    assert_eq!(
        whole, chunked,
        "the result depends on the chunking {sizes:?}"
    );
    if body.len() <= 512 {
        let bytes = __fuzz::read_multipart(cut(body, &[0]), BOUNDARY);
        assert_eq!(whole, bytes, "the result depends on the chunking (bytes)");
    }

    if let Ok(parts) = &whole {
        let stored: usize = parts.iter().map(|part| part.body.len()).sum();
        assert!(
            stored <= body.len(),
            "{stored} body bytes from {}",
            body.len()
        );
        for part in parts {
            assert!(part.header_len <= body.len());
            if let Some(name) = part
                .file_name
                .as_deref()
                .and_then(__fuzz::sanitize_file_name)
            {
                assert!(
                    __fuzz::is_single_normal_component(&name),
                    "{:?} -> {name:?}",
                    part.file_name
                );
            }
        }
    }
    // The boundary parser on the same bytes as a content type.
    if let Ok(text) = std::str::from_utf8(body) {
        if let Some(boundary) = __fuzz::boundary(text) {
            assert!((1..=70).contains(&boundary.len()), "{boundary:?}");
        }
    }
});
