//! Property-based tests (proptest, bounded case counts): the key and query parsers, the file
//! name sanitiser seen through the public behaviour, and the multipart path fed arbitrary and
//! valid bodies split at arbitrary points. Everything runs in process (`oneshot`), no socket.

mod support;

use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use support::*;
use tower_upload_layer::{UploadFinished, UploadLayer, DEFAULT_TEMP_SUBDIR};
use tower_upload_state::{
    Command, KeyError, QueryError, UploadKey, UploadQuery, UploadRegistry, MAX_BATCH_KEYS,
    MAX_KEY_LEN,
};

const CASES: u32 = 256;

fn config() -> Config {
    Config {
        cases: CASES,
        // No regression files written into the source tree.
        failure_persistence: None,
        ..Config::default()
    }
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// Percent-encodes every byte but unreserved ASCII.
fn encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn key_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_.-]{1,40}",
        "[A-Za-z0-9]{30}",
        "[A-Za-z0-9_.-]{120,140}",
        any::<String>(),
        "[ -~]{0,20}",
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn keys_are_accepted_exactly_when_valid_and_round_trip(text in key_text()) {
        let valid = !text.is_empty() && text.len() <= MAX_KEY_LEN && text.chars().all(is_key_char);
        match UploadKey::parse(&text) {
            Ok(key) => {
                prop_assert!(valid, "{text:?} was accepted");
                prop_assert_eq!(key.as_str(), text.as_str());
                prop_assert_eq!(key.to_string(), text.clone());
                let json = serde_json::to_string(&key).unwrap();
                prop_assert_eq!(serde_json::from_str::<UploadKey>(&json).unwrap(), key);
            }
            Err(error) => {
                prop_assert!(!valid, "{text:?} was refused: {error}");
                prop_assert!(error.to_string().len() < 300);
            }
        }
    }

    #[test]
    fn batches_keep_their_order_and_refuse_repeats_and_gaps(
        keys in prop::collection::vec("[A-Za-z0-9_.-]{1,12}", 1..40),
        gap in any::<prop::sample::Index>(),
    ) {
        let joined = keys.join(";");
        let mut distinct = keys.clone();
        distinct.sort();
        distinct.dedup();
        match UploadKey::parse_batch(&joined) {
            Ok(batch) => {
                prop_assert_eq!(distinct.len(), keys.len(), "repeats were accepted");
                let parsed: Vec<&str> = batch.iter().map(UploadKey::as_str).collect();
                prop_assert_eq!(parsed, keys.iter().map(String::as_str).collect::<Vec<_>>());
            }
            Err(KeyError::DuplicateInBatch { key }) => {
                prop_assert!(distinct.len() < keys.len());
                prop_assert!(keys.iter().filter(|k| **k == key.as_str()).count() > 1);
            }
            Err(other) => prop_assert!(false, "{joined:?}: {other}"),
        }
        let position = gap.index(keys.len() + 1);
        let mut with_gap = keys.clone();
        with_gap.insert(position, String::new());
        if distinct.len() == keys.len() {
            prop_assert_eq!(
                UploadKey::parse_batch(&with_gap.join(";")),
                Err(KeyError::EmptyInBatch { position })
            );
        }
        prop_assert!(keys.len() <= MAX_BATCH_KEYS);
    }

    #[test]
    fn the_query_parser_never_panics(query in prop_oneof![any::<String>(), "[ -~]{0,300}"]) {
        if let Ok(parsed) = UploadQuery::parse(&query) {
            let _ = parsed.key();
            let _ = parsed.keys();
            let _ = parsed.command();
        }
    }

    #[test]
    fn percent_encoded_queries_decode_to_what_was_sent(
        key_bytes in prop::collection::vec(any::<u8>(), 0..60),
        command in prop_oneof![
            Just("status".to_owned()),
            Just("cancel".to_owned()),
            Just("fileSize".to_owned()),
            Just("FILESIZE".to_owned()),
            "[ -~]{0,20}",
        ],
        noise in prop::collection::vec(("[a-z_]{1,6}", "[ -~]{0,10}"), 0..4),
        key_first in any::<bool>(),
    ) {
        let mut pairs: Vec<String> = noise
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), "key" | "command" | "cid"))
            .map(|(name, value)| format!("{name}={}", encode(value.as_bytes())))
            .collect();
        let key_pair = format!("key={}", encode(&key_bytes));
        let command_pair = format!("command={}", encode(command.as_bytes()));
        if key_first {
            pairs.insert(0, key_pair);
            pairs.push(command_pair);
        } else {
            pairs.insert(0, command_pair);
            pairs.push(key_pair);
        }
        let query = pairs.join("&");
        let parsed = UploadQuery::parse(&query).unwrap();
        let sent = String::from_utf8_lossy(&key_bytes).into_owned();
        prop_assert_eq!(parsed.key.as_deref(), Some(sent.as_str()));
        match parsed.key() {
            Ok(key) => prop_assert_eq!(key.as_str(), sent.as_str()),
            Err(_) => prop_assert!(UploadKey::parse(&sent).is_err()),
        }
        match parsed.command() {
            Ok(Some(parsed_command)) => {
                prop_assert!(command.eq_ignore_ascii_case(parsed_command.as_str()));
            }
            Ok(None) => prop_assert!(false, "the command was lost"),
            Err(QueryError::UnknownCommand(shown)) => {
                prop_assert!(Command::parse(&command).is_err());
                prop_assert!(shown.chars().count() <= 67);
            }
            Err(other) => prop_assert!(false, "{other}"),
        }
        let repeated = format!("{query}&{}", pairs[0]);
        prop_assert!(UploadQuery::parse(&repeated).is_err());
    }
}

/// Where `upload_finished` says each key's file went.
type Stored = Arc<Mutex<Vec<(String, Option<PathBuf>)>>>;

/// One in-process app, a runtime to drive it, and the folders it writes.
struct Harness {
    runtime: tokio::runtime::Runtime,
    app: InProcessApp,
    registry: UploadRegistry,
    uploads: PathBuf,
    stored: Stored,
    next: AtomicU64,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn new(configure: impl FnOnce(UploadLayer) -> UploadLayer) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let uploads = dir.path().join("uploads");
        let registry = UploadRegistry::new();
        let stored: Stored = Arc::default();
        let record = Arc::clone(&stored);
        let layer = configure(
            UploadLayer::new(registry.clone())
                .upload_dir(&uploads)
                .buffer_size(8 * 1024),
        )
        .on_upload_finished(move |event: UploadFinished| {
            let record = Arc::clone(&record);
            async move {
                let entry = (event.info.key.to_string(), event.path.clone());
                record.lock().unwrap().push(entry);
            }
        });
        Self {
            runtime,
            app: in_process_app(layer),
            registry,
            uploads,
            stored,
            next: AtomicU64::new(0),
            _dir: dir,
        }
    }

    fn key(&self) -> String {
        format!("p{}", self.next.fetch_add(1, Ordering::Relaxed))
    }

    fn stored_path(&self, key: &str) -> Option<PathBuf> {
        self.stored
            .lock()
            .unwrap()
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, path)| path.clone())
    }

    /// Uploads `pieces` under the keys; the HTTP status and the JSON answer. Checks what every
    /// answer must be: JSON, no 5xx, no key left in flight, no temp file left.
    fn upload(&self, keys: &[String], pieces: Vec<Bytes>) -> (u16, serde_json::Value) {
        self.runtime.block_on(async {
            let request = upload_request(&format!("key={}", keys.join(";")), pieces);
            let (status, body) = call_in_process(&self.app, request).await;
            let answer: serde_json::Value = serde_json::from_slice(&body)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"));
            assert!(status < 500, "{status}: {answer}");
            let mut ended = Vec::new();
            for key in keys {
                let info = self
                    .registry
                    .snapshot(&UploadKey::parse(key).unwrap())
                    .await
                    .unwrap();
                match info {
                    Some(info) => {
                        assert!(info.status.is_terminal(), "{key}: {info:?}");
                        ended.push(key.clone());
                    }
                    // Released: a key not reached after another key failed.
                    None => assert_ne!(status, 200, "{key} released by a success: {answer}"),
                }
            }
            // The `upload_finished` handlers run after the answer.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while !ended
                .iter()
                .all(|key| self.stored.lock().unwrap().iter().any(|(k, _)| k == key))
            {
                assert!(tokio::time::Instant::now() < deadline, "never announced");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            self.wait_for_no_temp_files().await;
            (status, answer)
        })
    }

    async fn wait_for_no_temp_files(&self) {
        let temp = self.uploads.join(DEFAULT_TEMP_SUBDIR);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !list_files(&temp).is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "temp files left: {:?}",
                list_files(&temp)
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn assert_safely_stored(&self, path: &Path) {
        assert_eq!(path.parent(), Some(self.uploads.as_path()), "{path:?}");
        let name = path.file_name().unwrap();
        let mut components = Path::new(name).components();
        assert!(
            matches!(components.next(), Some(Component::Normal(_))) && components.next().is_none(),
            "{path:?}"
        );
        let name = name.to_str().expect("UTF-8");
        assert!(!name.starts_with('.'), "{name:?}");
        assert!(!name.contains(['/', '\\', '\0']), "{name:?}");
        assert!(path.is_file(), "{path:?}");
    }
}

fn file_part(filename: &str, content: &[u8]) -> Vec<u8> {
    let mut bytes = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"f\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    bytes.extend_from_slice(content);
    bytes.extend_from_slice(b"\r\n");
    bytes
}

fn closing() -> Vec<u8> {
    format!("--{BOUNDARY}--\r\n").into_bytes()
}

/// File names built from the characters that have fooled sanitisers.
fn hostile_name() -> impl Strategy<Value = String> {
    let tricky = prop_oneof![
        4 => prop::sample::select(('a'..='z').chain('A'..='Z').chain('0'..='9').collect::<Vec<_>>()),
        2 => Just('.'),
        2 => Just('/'),
        2 => Just('\\'),
        1 => prop::sample::select(vec![
            ' ', ':', '*', '?', '<', '>', '|', '"', '\0', '\t', '~', '$', '%',
            '\u{202E}', '\u{202D}', '\u{200B}', '\u{200D}', '\u{FEFF}', '\u{00AD}',
            '\u{FF0F}', '\u{FF3C}', '\u{2215}', '\u{2024}', '\u{FF0E}', '\u{0307}',
            'é', '日', '\u{1F600}', '\u{7F}', '\u{85}',
        ]),
        1 => any::<char>(),
    ];
    let prefix = prop::sample::select(vec![
        "",
        "",
        "",
        "..",
        "../",
        "..\\",
        "/",
        "C:",
        "C:\\",
        "\\\\srv\\s\\",
        "CON",
        "nul.",
        "com1.",
        "LPT9",
        ".tu-",
        ".tower-upload-tmp/",
    ]);
    (prefix, prop::collection::vec(tricky, 0..64), 0usize..3).prop_map(|(prefix, chars, longer)| {
        let tail: String = chars.into_iter().collect();
        format!("{prefix}{}", tail.repeat(1 + longer * 40))
    })
}

#[test]
fn any_file_name_is_stored_as_one_safe_component_or_refused() {
    let harness = Harness::new(|layer| layer);
    let mut runner = TestRunner::new(config());
    runner
        .run(&hostile_name(), |name| {
            // The header quotes the name: escape quotes as a browser does. CR, LF and NUL stay:
            // they make the part unparsable, which must be a clean 4xx too.
            let quoted = name.replace('"', "\\\"");
            let key = harness.key();
            let body = [file_part(&quoted, b"x"), closing()].concat();
            let (status, answer) =
                harness.upload(std::slice::from_ref(&key), vec![Bytes::from(body)]);
            match harness.stored_path(&key) {
                Some(path) => {
                    prop_assert_eq!(status, 200, "{}", answer);
                    harness.assert_safely_stored(&path);
                }
                None => {
                    prop_assert!((400..500).contains(&status), "{name:?}: {status} {answer}");
                    let error = answer["error"].as_i64();
                    prop_assert!(matches!(error, Some(0 | 4)), "{name:?}: {answer}");
                }
            }
            Ok(())
        })
        .unwrap();
}

/// A valid body of 1 to 3 files (and maybe a form field), with what each file holds.
fn valid_body() -> impl Strategy<Value = (Vec<u8>, Vec<(String, Vec<u8>)>)> {
    let file = (0usize..120_000, any::<u64>(), 0u8..4);
    (
        prop::collection::vec(file, 1..4),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(files, field_first, field_last)| {
            let mut bytes = Vec::new();
            let field = MultipartBody::new().field("note", "a form field").bytes;
            if field_first {
                bytes.extend_from_slice(&field);
            }
            let mut contents = Vec::new();
            for (i, (len, seed, shape)) in files.into_iter().enumerate() {
                // Contents that look like the framing are the interesting ones.
                let content = match shape {
                    0 => pattern(len, seed),
                    // Near misses of the delimiter (the whole one cannot be in a part).
                    1 => format!("\r\n--{}", &BOUNDARY[..BOUNDARY.len() - 1])
                        .repeat(len % 50 + 1)
                        .into_bytes(),
                    2 => vec![b'-'; len.min(5_000)],
                    _ => b"\r\n\r\n--".repeat(len % 500 + 1),
                };
                let name = format!("file{i}.bin");
                bytes.extend_from_slice(&file_part(&name, &content));
                contents.push((name, content));
            }
            if field_last {
                bytes.extend_from_slice(&field);
            }
            bytes.extend_from_slice(&closing());
            (bytes, contents)
        })
}

fn cuts() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(any::<usize>(), 0..24)
}

#[test]
fn valid_bodies_in_random_pieces_are_stored_byte_for_byte() {
    let harness = Harness::new(|layer| layer.max_file_size(None));
    let mut runner = TestRunner::new(config());
    runner
        .run(&(valid_body(), cuts()), |((bytes, contents), cuts)| {
            let cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
            let keys: Vec<String> = contents.iter().map(|_| harness.key()).collect();
            let (status, answer) = harness.upload(&keys, split_at_points(&bytes, &cuts));
            prop_assert_eq!(status, 200, "{}", answer);
            for (key, (_, content)) in keys.iter().zip(&contents) {
                let path = harness.stored_path(key).expect("stored");
                harness.assert_safely_stored(&path);
                let saved = std::fs::read(&path).unwrap();
                prop_assert_eq!(sha256(&saved), sha256(content), "{}", key);
                std::fs::remove_file(&path).unwrap();
            }
            Ok(())
        })
        .unwrap();
}

/// Regression, found by `valid_bodies_in_random_pieces_are_stored_byte_for_byte`: while multer
/// looks for the first boundary it reads twice per poll, so it reads one chunk past a first
/// chunk that splits `--boundary` before it parses anything; the body adapter counted that
/// read against the part-header budget and refused a valid upload with 431.
#[test]
fn a_valid_body_whose_first_piece_splits_the_first_boundary_is_accepted() {
    let harness = Harness::new(|layer| layer.max_file_size(None));
    let content = pattern(100_000, 1);
    let body = [file_part("split.bin", &content), closing()].concat();
    // 1 byte, then up to the header budget (16 KiB), then the rest.
    let key = harness.key();
    let (status, answer) = harness.upload(
        std::slice::from_ref(&key),
        split_at_points(&body, &[1, 16 * 1024]),
    );
    assert_eq!(status, 200, "{answer}");
    let saved = std::fs::read(harness.stored_path(&key).unwrap()).unwrap();
    assert_eq!(sha256(&saved), sha256(&content));
}

#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Delete(usize, usize),
    Insert(usize, Vec<u8>),
    Duplicate(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let fragment = prop_oneof![
        Just(format!("--{BOUNDARY}").into_bytes()),
        Just(format!("\r\n--{BOUNDARY}--\r\n").into_bytes()),
        Just(b"\r\n".to_vec()),
        Just(b"\r\n\r\n".to_vec()),
        Just(b"Content-Disposition: form-data; name=\"x\"; filename=\"../y\"\r\n".to_vec()),
        prop::collection::vec(any::<u8>(), 1..40),
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Mutation::Flip(at, b)),
        (any::<usize>(), 1usize..200).prop_map(|(at, n)| Mutation::Delete(at, n)),
        (any::<usize>(), fragment).prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        (any::<usize>(), 1usize..300).prop_map(|(at, n)| Mutation::Duplicate(at, n)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for mutation in mutations {
        let len = bytes.len();
        let at = |i: usize| if len == 0 { 0 } else { i % (len + 1) };
        match mutation {
            Mutation::Flip(i, b) if len > 0 => bytes[i % len] ^= b | 1,
            Mutation::Flip(..) => {}
            Mutation::Delete(i, n) => {
                let start = at(*i);
                let end = (start + n).min(len);
                bytes.drain(start..end);
            }
            Mutation::Insert(i, fragment) => {
                let start = at(*i);
                bytes.splice(start..start, fragment.iter().copied());
            }
            Mutation::Duplicate(i, n) => {
                let start = at(*i);
                let end = (start + n).min(len);
                let copy = bytes[start..end].to_vec();
                bytes.splice(end..end, copy);
            }
            Mutation::Truncate(i) => bytes.truncate(at(*i)),
        }
    }
    bytes
}

#[test]
fn arbitrary_bodies_in_random_pieces_never_fail_the_server_nor_leak() {
    let harness = Harness::new(|layer| {
        layer
            .max_file_size(Some(200_000))
            .max_part_header_size(2_048)
    });
    let arbitrary = prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..3_000).prop_map(|bytes| (bytes, 1usize)),
        3 => (valid_body(), prop::collection::vec(mutation(), 1..6))
            .prop_map(|((bytes, contents), mutations)| (mutate(bytes, &mutations), contents.len())),
    ];
    let mut runner = TestRunner::new(config());
    runner
        .run(&(arbitrary, cuts()), |((bytes, files), cuts)| {
            let cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
            let keys: Vec<String> = (0..files).map(|_| harness.key()).collect();
            let (status, answer) = harness.upload(&keys, split_at_points(&bytes, &cuts));
            for key in &keys {
                if let Some(path) = harness.stored_path(key) {
                    harness.assert_safely_stored(&path);
                }
            }
            if status != 200 {
                prop_assert!(answer.get("error").is_some(), "{status}: {answer}");
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn arbitrary_queries_get_json_answers_from_both_services() {
    let harness = Harness::new(|layer| layer);
    let query = prop_oneof![
        "[ -~]{0,200}",
        prop::collection::vec(
            prop_oneof![
                Just("key=".to_owned()),
                Just("command=".to_owned()),
                Just("status".to_owned()),
                Just("fileSize".to_owned()),
                Just("&".to_owned()),
                Just(";".to_owned()),
                Just("%".to_owned()),
                Just("%00".to_owned()),
                Just("%C0%AF".to_owned()),
                Just("%2F".to_owned()),
                Just("+".to_owned()),
                "[A-Za-z0-9]{1,8}",
            ],
            0..20
        )
        .prop_map(|parts| parts.concat()),
    ];
    let body = [file_part("q.txt", b"q"), closing()].concat();
    let mut runner = TestRunner::new(config());
    runner
        .run(&query, |query| {
            let Ok(status_uri) = format!("/status?{query}").parse::<http::Uri>() else {
                return Ok(());
            };
            harness.runtime.block_on(async {
                let request = http::Request::get(status_uri)
                    .body(pieces_body(Vec::new()))
                    .unwrap();
                let (status, answer) = call_in_process(&harness.app, request).await;
                let json: serde_json::Value = serde_json::from_slice(&answer)
                    .unwrap_or_else(|e| panic!("{query:?}: not JSON ({e}): {answer:?}"));
                assert!(matches!(status, 200 | 400), "{query:?}: {status} {json}");
                if status == 400 {
                    assert!(json["error"].is_string(), "{query:?}: {json}");
                }
                let request = http::Request::post(format!("/upload?{query}"))
                    .header("content-type", MultipartBody::content_type())
                    .body(pieces_body(vec![Bytes::from(body.clone())]))
                    .unwrap();
                let (status, answer) = call_in_process(&harness.app, request).await;
                let json: serde_json::Value = serde_json::from_slice(&answer)
                    .unwrap_or_else(|e| panic!("{query:?}: not JSON ({e}): {answer:?}"));
                assert!(status < 500, "{query:?}: {status} {json}");
                if !matches!(status, 200 | 409) {
                    assert!(json.get("error").is_some(), "{query:?}: {json}");
                }
                harness.wait_for_no_temp_files().await;
            });
            Ok(())
        })
        .unwrap();
    assert_eq!(harness.registry.in_flight(), 0);
}
