//! `UploadQuery::parse` on any query string: never panics, and what it accepts can be asked
//! for its key(s) and command without panicking either.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_upload_state::UploadQuery;

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = UploadQuery::parse(query) {
        let _ = parsed.key();
        let _ = parsed.command();
        if let Ok(keys) = parsed.keys() {
            assert!(!keys.is_empty(), "{query:?}: an empty batch was accepted");
        }
    }
});
