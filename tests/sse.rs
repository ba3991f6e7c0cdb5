//! Pushed progress (`command=watch`, Server-Sent Events) and nginx's upload progress dialect
//! (`?X-Progress-ID=K`), over real loopback sockets; the cross-instance test runs two
//! instances over a real `redis-server` (with the `redis` feature).

#[cfg(feature = "redis")]
#[path = "support/redis.rs"]
mod redis_server;
mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use support::*;
use tower_upload_state::{
    FileError, UploadHandle, UploadInfo, UploadKey, UploadRegistry, UploadStatus,
};
use tower_upload_status::UploadStatusService;

/// One Server-Sent Event (or a comment line, for heartbeats).
#[derive(Debug, Clone, PartialEq)]
struct Event {
    id: Option<String>,
    data: Option<Value>,
    comment: bool,
}

/// A `text/event-stream` answer read frame by frame.
struct Stream {
    status: u16,
    headers: http::HeaderMap,
    body: hyper::body::Incoming,
    buffer: String,
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn open(server: &TestServer, query: &str, headers: &[(&str, &str)]) -> Stream {
    open_with(&client(), server, query, headers).await
}

async fn open_with(
    client: &HttpClient,
    server: &TestServer,
    query: &str,
    headers: &[(&str, &str)],
) -> Stream {
    let mut request = http::Request::get(format!("http://{}/status?{query}", server.addr));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .request(request.body(Empty::new()).unwrap())
        .await
        .expect("the status service answers");
    let (parts, body) = response.into_parts();
    Stream {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
        buffer: String::new(),
    }
}

impl Stream {
    /// The next event or comment; `None` when the stream ended.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = Event {
                    id: None,
                    data: None,
                    comment: false,
                };
                for line in block.lines() {
                    if let Some(id) = line.strip_prefix("id: ") {
                        event.id = Some(id.to_owned());
                    } else if let Some(data) = line.strip_prefix("data: ") {
                        event.data = Some(serde_json::from_str(data).expect("JSON data"));
                    } else if line.starts_with(':') {
                        event.comment = true;
                    }
                }
                return Some(event);
            }
            let frame = tokio::time::timeout(Duration::from_secs(10), self.body.frame())
                .await
                .expect("an event within 10 s")?
                .expect("the stream does not fail");
            if let Ok(data) = frame.into_data() {
                self.buffer.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    }

    /// The next event that is not a heartbeat.
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            let event = self.next().await?;
            if !event.comment || event.data.is_some() {
                return Some(event);
            }
        }
    }

    /// Reads events until the stream ends; returns them (heartbeats left out).
    async fn rest(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(event) = self.next_event().await {
            events.push(event);
        }
        events
    }

    fn assert_event_stream(&self) {
        assert_eq!(self.status, 200);
        assert_eq!(self.headers["content-type"], "text/event-stream");
        assert_eq!(self.headers["cache-control"], "no-store");
    }
}

fn answer(status: i64, error: i64, bytes: u64, size: u64) -> Value {
    json!({"status": status, "error": error, "bytesUploaded": bytes, "size": size, "serverMessage": ""})
}

fn no_such_file() -> Value {
    answer(3, 5, 0, 0)
}

async fn server_with(
    configure: impl FnOnce(UploadStatusService) -> UploadStatusService,
) -> TestServer {
    server_over(UploadRegistry::new(), configure).await
}

async fn server_over(
    registry: UploadRegistry,
    configure: impl FnOnce(UploadStatusService) -> UploadStatusService,
) -> TestServer {
    TestServer::start_custom(
        registry,
        |layer| layer.max_file_size(Some(1 << 20)),
        configure,
    )
    .await
}

async fn begin(registry: &UploadRegistry, key: &str) -> UploadHandle {
    registry
        .begin(UploadInfo::new(UploadKey::parse(key).unwrap()))
        .await
        .unwrap()
}

async fn watchers_drop_to(server: &TestServer, status: &UploadStatusService, n: usize) {
    let _ = server;
    eventually(&format!("{n} watchers left"), || async {
        status.watchers() == n
    })
    .await;
}

#[tokio::test]
async fn a_real_upload_is_pushed_until_its_final_event_and_the_stream_ends() {
    let server = server_with(|status| status.watch_interval(Duration::from_millis(20))).await;
    let content = pattern(256 * 1024, 1);
    let body = MultipartBody::new()
        .file("a.bin", "application/octet-stream", &content)
        .finish();
    let mut upload = server.open_upload("sse1", &body).await;
    upload.write(&body.bytes[..64 * 1024]).await;
    server.wait_streaming("sse1").await;

    let mut stream = open(&server, "key=sse1&command=watch", &[]).await;
    stream.assert_event_stream();
    assert!(stream.headers.get("content-length").is_none(), "a stream");
    assert_eq!(stream.headers["x-accel-buffering"], "no");
    let first = stream.next_event().await.unwrap();
    assert_eq!(first.id.as_deref(), Some("1"), "ids count from 1");
    let data = first.data.unwrap();
    let fields: Vec<&str> = data
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    // (serde_json's map is sorted.)
    assert_eq!(
        fields,
        ["bytesUploaded", "error", "serverMessage", "size", "status"],
        "the status answer's object"
    );
    assert_eq!(data["status"], 1);
    let mut last = data["bytesUploaded"].as_u64().unwrap();
    assert!(last > 0);

    // More bytes: progress events, in order, growing.
    let mut seen = 0;
    let mut final_event = None;
    for chunk in body.bytes[64 * 1024..].chunks(48 * 1024) {
        upload.write(chunk).await;
        tokio::time::sleep(Duration::from_millis(40)).await;
        // Drain what arrived.
        while let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_millis(10), stream.next_event()).await
        {
            let data = event.data.clone().unwrap();
            let bytes = data["bytesUploaded"].as_u64().unwrap();
            assert!(bytes >= last, "progress never goes back");
            last = bytes;
            seen += 1;
            if event.id.as_deref() == Some("end") {
                final_event = Some(event);
                break;
            }
        }
    }
    upload.end().await;
    let response = upload.response().await;
    assert_eq!(response.status, 200, "{response:?}");
    assert!(
        seen >= 2,
        "progress was pushed while the upload streamed ({seen} events)"
    );
    let rest = stream.rest().await;
    let last_event = match final_event {
        Some(event) => {
            assert!(rest.is_empty(), "nothing after the end: {rest:?}");
            event
        }
        None => rest
            .last()
            .cloned()
            .unwrap_or_else(|| panic!("a final event: {rest:?}")),
    };
    assert_eq!(last_event.id.as_deref(), Some("end"));
    let size = content.len() as u64;
    assert_eq!(last_event.data.unwrap(), answer(2, -1, size, size));
    server.stop().await;
}

#[tokio::test]
async fn progress_is_coalesced_to_one_event_per_interval() {
    let interval = Duration::from_millis(100);
    let server = server_with(|status| status.watch_interval(interval)).await;
    let upload = begin(&server.registry, "co").await;
    upload.set_status(UploadStatus::Started).await.unwrap();
    let mut stream = open(&server, "key=co&command=watch", &[]).await;
    assert_eq!(
        stream.next_event().await.unwrap().data.unwrap()["bytesUploaded"],
        0
    );
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        let until = Instant::now() + Duration::from_millis(1_000);
        while Instant::now() < until {
            upload.add_bytes(1);
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        upload
            .finish(UploadStatus::Finished, FileError::None, None)
            .await
    });
    let events = stream.rest().await;
    let elapsed = started.elapsed();
    let info = writer.await.unwrap();
    // Thousands of changes, at most one event per interval (+1 for the final one).
    let most = (elapsed.as_millis() / interval.as_millis()) as usize + 2;
    assert!(
        events.len() <= most && events.len() >= 3,
        "{} events in {elapsed:?}",
        events.len()
    );
    let last = events.last().unwrap();
    assert_eq!(last.id.as_deref(), Some("end"));
    assert_eq!(
        last.data.clone().unwrap(),
        answer(2, -1, info.bytes_uploaded, info.bytes_uploaded)
    );
    server.stop().await;
}

#[tokio::test]
async fn a_terminal_status_is_pushed_at_once() {
    let server = server_with(|status| status.watch_interval(Duration::from_secs(60))).await;
    let upload = begin(&server.registry, "now").await;
    let mut stream = open(&server, "key=now&command=watch", &[]).await;
    stream.next_event().await.unwrap();
    let started = Instant::now();
    upload
        .finish(
            UploadStatus::FileSizeExceeded,
            FileError::FileSizeExceeded,
            Some("too big".into()),
        )
        .await;
    let event = stream.next_event().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not held for the 60 s interval"
    );
    assert_eq!(event.id.as_deref(), Some("end"));
    assert_eq!(
        event.data.unwrap(),
        json!({"status": 5, "error": 2, "bytesUploaded": 0, "size": 0, "serverMessage": "too big"})
    );
    assert!(stream.next().await.is_none(), "the stream ends");
    server.stop().await;
}

#[tokio::test]
async fn an_unknown_key_is_one_status_3_event_and_the_end() {
    let status = UploadStatusService::new(UploadRegistry::new());
    let server = server_with({
        let status = status.clone();
        move |_| status
    })
    .await;
    let mut stream = open(&server, "key=nobody&command=watch", &[]).await;
    stream.assert_event_stream();
    let events = stream.rest().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].id.as_deref(), Some("end"));
    assert_eq!(events[0].data.clone().unwrap(), no_such_file());
    assert_eq!(status.watchers(), 0, "an answer without a watcher");
    // A finished key: its record, and the end.
    let done = begin(&status.registry().clone(), "done").await;
    done.add_bytes(3);
    done.finish(UploadStatus::Finished, FileError::None, None)
        .await;
    let events = open(&server, "key=done&command=watch", &[])
        .await
        .rest()
        .await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data.clone().unwrap(), answer(2, -1, 3, 3));
    server.stop().await;
}

#[tokio::test]
async fn a_batch_stream_names_its_keys_and_ends_after_the_last() {
    let server = server_with(|status| status.watch_interval(Duration::from_millis(10))).await;
    let a = begin(&server.registry, "b1").await;
    let b = begin(&server.registry, "b2").await;
    let mut stream = open(&server, "key=b1;b2;b3&command=watch", &[]).await;
    let mut first = Vec::new();
    for _ in 0..3 {
        first.push(stream.next_event().await.unwrap().data.unwrap());
    }
    assert_eq!(first[0]["key"], "b1");
    assert_eq!(first[1]["key"], "b2");
    assert_eq!(
        first[2],
        json!({"key": "b3", "status": 3, "error": 5, "bytesUploaded": 0, "size": 0, "serverMessage": ""})
    );
    a.add_bytes(5);
    a.finish(UploadStatus::Finished, FileError::None, None)
        .await;
    let event = stream.next_event().await.unwrap();
    assert_ne!(event.id.as_deref(), Some("end"), "b2 is still streaming");
    assert_eq!(
        event.data.unwrap(),
        json!({"key": "b1", "status": 2, "error": -1, "bytesUploaded": 5, "size": 5, "serverMessage": ""})
    );
    b.finish(UploadStatus::CanceledByClientCommand, FileError::None, None)
        .await;
    let rest = stream.rest().await;
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(rest[0].id.as_deref(), Some("end"));
    assert_eq!(rest[0].data.clone().unwrap()["key"], "b2");
    assert_eq!(rest[0].data.clone().unwrap()["status"], 4);
    // A bad batch is refused like a bad key.
    let refused = open(&server, "key=b1;;b2&command=watch", &[]).await;
    assert_eq!(refused.status, 400);
    server.stop().await;
}

#[tokio::test]
async fn heartbeats_keep_an_idle_stream_alive() {
    let server = server_with(|status| {
        status
            .heartbeat_interval(Duration::from_millis(50))
            .watch_interval(Duration::from_millis(10))
    })
    .await;
    let upload = begin(&server.registry, "idle").await;
    let mut stream = open(&server, "key=idle&command=watch", &[]).await;
    stream.next_event().await.unwrap();
    let mut heartbeats = 0;
    let until = Instant::now() + Duration::from_millis(400);
    while Instant::now() < until {
        let event = stream.next().await.unwrap();
        assert!(
            event.comment && event.data.is_none(),
            "only heartbeats: {event:?}"
        );
        heartbeats += 1;
    }
    assert!(heartbeats >= 3, "{heartbeats}");
    upload.abandon().await;
    // An abandoned claim is as unknown as a key never registered.
    let rest = stream.rest().await;
    assert_eq!(rest.last().unwrap().data.clone().unwrap(), no_such_file());
    server.stop().await;
}

#[tokio::test]
async fn watchers_are_bounded_with_503_beyond_the_most() {
    let status = UploadStatusService::new(UploadRegistry::new()).max_watchers(2);
    let registry = status.registry().clone();
    let server = server_over(registry.clone(), {
        let status = status.clone();
        move |_| status
    })
    .await;
    let upload = begin(&registry, "many").await;
    let client = client();
    let mut first = open_with(&client, &server, "key=many&command=watch", &[]).await;
    let mut second = open_with(&client, &server, "key=many&command=watch", &[]).await;
    first.next_event().await.unwrap();
    second.next_event().await.unwrap();
    assert_eq!(status.watchers(), 2);
    let refused = open_with(&client, &server, "key=many&command=watch", &[]).await;
    assert_eq!(refused.status, 503);
    assert_eq!(refused.headers["retry-after"], "5");
    assert_eq!(refused.headers["content-type"], "application/json");
    let body = refused.body.collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"], "too_many_watchers");
    // Polling still works beyond the bound.
    assert_eq!(server.status("many").await["status"], 0);
    // A client that goes away frees its place.
    drop(first);
    watchers_drop_to(&server, &status, 1).await;
    let mut third = open_with(&client, &server, "key=many&command=watch", &[]).await;
    assert_eq!(third.status, 200);
    third.next_event().await.unwrap();
    upload
        .finish(UploadStatus::Finished, FileError::None, None)
        .await;
    second.rest().await;
    third.rest().await;
    watchers_drop_to(&server, &status, 0).await;
    server.stop().await;
}

fn user(parts: &http::request::Parts) -> Option<String> {
    parts
        .headers
        .get("x-user")?
        .to_str()
        .ok()
        .map(str::to_owned)
}

#[tokio::test]
async fn owner_binding_applies_to_streams() {
    let registry = UploadRegistry::new().with_owner(user);
    let server = server_over(registry.clone(), |status| {
        status.watch_interval(Duration::from_millis(10))
    })
    .await;
    let mut info = UploadInfo::new(UploadKey::parse("mine").unwrap());
    info.owner = Some("alice".into());
    let upload = registry.begin(info).await.unwrap();
    upload.add_bytes(7);
    for stranger in [&[("x-user", "mallory")][..], &[]] {
        let events = open(&server, "key=mine&command=watch", stranger)
            .await
            .rest()
            .await;
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].data.clone().unwrap(), no_such_file());
        // The batch form and the nginx dialect too.
        let events = open(&server, "key=mine;other&command=watch", stranger)
            .await
            .rest()
            .await;
        assert_eq!(events[0].data.clone().unwrap()["status"], 3);
        let nginx = send(
            server.addr,
            "GET",
            "/status?X-Progress-ID=mine",
            &headers(stranger),
            b"",
        )
        .await;
        assert_eq!(nginx.json(), json!({"state": "starting"}));
    }
    let mut stream = open(&server, "key=mine&command=watch", &[("x-user", "alice")]).await;
    assert_eq!(
        stream.next_event().await.unwrap().data.unwrap(),
        answer(0, -1, 7, 7)
    );
    upload
        .finish(UploadStatus::Finished, FileError::None, None)
        .await;
    assert_eq!(
        stream.rest().await.last().unwrap().data.clone().unwrap(),
        answer(2, -1, 7, 7)
    );
    server.stop().await;
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

#[tokio::test]
async fn a_lagging_reader_is_dropped_and_holds_no_memory() {
    use tower::{Service, ServiceExt};
    let registry = UploadRegistry::new();
    let mut status = UploadStatusService::new(registry.clone())
        .watch_interval(Duration::from_millis(1))
        .watch_buffer(4);
    let upload = begin(&registry, "lag").await;
    let response = ServiceExt::<http::Request<()>>::ready(&mut status)
        .await
        .unwrap()
        .call(
            http::Request::get("/s?key=lag&command=watch")
                .body(())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(status.watchers(), 1);
    // The body is held but never read, while progress keeps changing.
    let changing = tokio::spawn({
        let status = status.clone();
        async move {
            for _ in 0..5_000 {
                upload.add_bytes(1);
                tokio::time::sleep(Duration::from_millis(1)).await;
                if status.watchers() == 0 {
                    break;
                }
            }
            upload
        }
    });
    eventually("the lagging watcher is dropped", || async {
        status.watchers() == 0
    })
    .await;
    let upload = changing.await.unwrap();
    // What was buffered is still delivered, then the stream ends: at most the buffer.
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let events = String::from_utf8(body.to_vec()).unwrap();
    let count = events.matches("data: ").count();
    assert!(
        (1..=4).contains(&count),
        "{count} buffered events: {events}"
    );
    assert!(!events.contains("id: end"), "cut short, not ended");
    upload.abandon().await;
}

#[tokio::test]
async fn a_reconnect_gets_the_current_state_at_once_or_204_after_the_end() {
    let server = server_with(|status| status.watch_interval(Duration::from_secs(60))).await;
    let upload = begin(&server.registry, "re").await;
    upload.add_bytes(11);
    let mut stream = open(&server, "key=re&command=watch", &[("last-event-id", "41")]).await;
    let event = stream.next_event().await.unwrap();
    assert_eq!(event.id.as_deref(), Some("42"), "numbering goes on");
    assert_eq!(event.data.unwrap(), answer(0, -1, 11, 11));
    drop(stream);
    // An EventSource that saw the last event and reconnects is told to stop: 204.
    let ended = open(&server, "key=re&command=watch", &[("last-event-id", "end")]).await;
    assert_eq!(ended.status, 204);
    assert_eq!(ended.headers["cache-control"], "no-store");
    upload.abandon().await;
    server.stop().await;
}

#[tokio::test]
async fn accept_event_stream_on_a_status_request_streams() {
    let server = server_with(|status| status).await;
    let upload = begin(&server.registry, "acc").await;
    let mut stream = open(
        &server,
        "key=acc&command=status",
        &[("accept", "text/event-stream")],
    )
    .await;
    stream.assert_event_stream();
    assert_eq!(
        stream.next_event().await.unwrap().data.unwrap(),
        answer(0, -1, 0, 0)
    );
    // Without the header: the JSON answer, as the widget expects.
    assert_eq!(server.status("acc").await, answer(0, -1, 0, 0));
    upload.abandon().await;
    server.stop().await;
}

/// The nginx upload progress module's JSON, as its README documents it: `starting`
/// (unknown, or not started), `uploading` with `received` and `size`, `done`, and `error`
/// with the HTTP status of the upload; JSONP with `callback`.
#[tokio::test]
async fn the_nginx_dialect_answers_every_state() {
    let server = server_with(|status| status).await;
    let nginx = |query: &'static str| {
        let addr = server.addr;
        async move {
            let response = send(addr, "GET", &format!("/status?{query}"), &[], b"").await;
            assert_eq!(response.status, 200, "{response:?}");
            assert_eq!(response.header("cache-control"), Some("no-store"));
            response
        }
    };
    let unknown = nginx("X-Progress-ID=nobody").await;
    assert_eq!(unknown.header("content-type"), Some("application/json"));
    assert_eq!(unknown.json(), json!({"state": "starting"}));

    let content = pattern(200 * 1024, 2);
    let body = MultipartBody::new()
        .file("n.bin", "application/octet-stream", &content)
        .finish();
    let mut upload = server.open_upload("ng1", &body).await;
    upload.write(&body.bytes[..100 * 1024]).await;
    server.wait_streaming("ng1").await;
    let uploading = nginx("X-Progress-ID=ng1").await.json();
    assert_eq!(uploading["state"], "uploading");
    let fields: Vec<&str> = uploading
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(fields, ["received", "size", "state"]);
    assert!(uploading["received"].as_u64().unwrap() > 0);
    // The header form, as the module's own example client sends it.
    let by_header = send(
        server.addr,
        "GET",
        "/status",
        &headers(&[("X-Progress-ID", "ng1")]),
        b"",
    )
    .await;
    assert_eq!(by_header.json()["state"], "uploading");
    upload.write(&body.bytes[100 * 1024..]).await;
    upload.end().await;
    assert_eq!(upload.response().await.status, 200);
    assert_eq!(
        nginx("X-Progress-ID=ng1").await.json(),
        json!({"state": "done"})
    );

    // Too large (the server's limit is 1 MiB): nginx reports 413.
    let big = MultipartBody::new()
        .file("big.bin", "application/octet-stream", &pattern(2 << 20, 3))
        .finish();
    let answer = server.post_upload("key=ng2", &big).await;
    assert_eq!(answer.status, 413);
    assert_eq!(
        nginx("X-Progress-ID=ng2").await.json(),
        json!({"state": "error", "status": 413})
    );

    // JSONP.
    let jsonp = nginx("X-Progress-ID=ng1&callback=jsonp123").await;
    assert_eq!(jsonp.header("content-type"), Some("application/javascript"));
    assert_eq!(jsonp.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        std::str::from_utf8(&jsonp.body).unwrap(),
        r#"jsonp123({"state":"done"});"#
    );
    // A callback that is not a plain name, or a bad id: 400.
    for query in [
        "X-Progress-ID=ng1&callback=alert(1)",
        "X-Progress-ID=a/b",
        "X-Progress-ID=a&X-Progress-ID=b",
    ] {
        let response = send(server.addr, "GET", &format!("/status?{query}"), &[], b"").await;
        assert_eq!(response.status, 400, "{query}");
    }
    server.stop().await;
}

#[cfg(feature = "redis")]
mod across_instances {
    use tower_upload_state::RedisStore;

    use crate::redis_server::RedisServer;

    use super::*;

    async fn instance(redis: &RedisServer, progress: Duration) -> TestServer {
        let store = RedisStore::builder(redis.url())
            .progress_interval(progress)
            .connect()
            .await
            .expect("connect to redis");
        server_over(UploadRegistry::with_store(store), |status| {
            status.watch_interval(Duration::from_millis(20))
        })
        .await
    }

    /// An upload streaming on A, watched on B: B pushes A's progress (published by A at
    /// most every progress interval) and the final status at once.
    #[tokio::test]
    async fn an_upload_on_one_instance_is_pushed_by_another() {
        let redis = RedisServer::start().await;
        let progress = Duration::from_millis(50);
        let a = instance(&redis, progress).await;
        let b = instance(&redis, progress).await;
        let content = pattern(400 * 1024, 4);
        let body = MultipartBody::new()
            .file("x.bin", "application/octet-stream", &content)
            .finish();
        let mut upload = a.open_upload("far", &body).await;
        upload.write(&body.bytes[..50 * 1024]).await;
        a.wait_streaming("far").await;
        eventually("B knows the upload", || async {
            b.status("far").await["status"] == 1
        })
        .await;
        let mut stream = open(&b, "key=far&command=watch", &[]).await;
        let first = stream.next_event().await.unwrap().data.unwrap();
        assert_eq!(first["status"], 1);
        let mut last = first["bytesUploaded"].as_u64().unwrap();
        let mut updates = 0;
        let mut lateness = Vec::new();
        for chunk in body.bytes[50 * 1024..].chunks(50 * 1024) {
            upload.write(chunk).await;
            let written = Instant::now();
            let target = a.status("far").await["bytesUploaded"].as_u64().unwrap();
            // Wait for B's stream to show at least what A has.
            while last < target {
                let event = stream.next_event().await.unwrap();
                let data = event.data.unwrap();
                assert!(data["bytesUploaded"].as_u64().unwrap() >= last);
                last = data["bytesUploaded"].as_u64().unwrap();
                updates += 1;
            }
            lateness.push(written.elapsed());
        }
        upload.end().await;
        assert_eq!(upload.response().await.status, 200);
        let rest = stream.rest().await;
        let size = content.len() as u64;
        assert_eq!(
            rest.last().unwrap().data.clone().unwrap(),
            answer(2, -1, size, size)
        );
        assert_eq!(rest.last().unwrap().id.as_deref(), Some("end"));
        assert!(
            updates >= 3,
            "progress pushed from the other instance ({updates})"
        );
        let worst = lateness.iter().max().unwrap();
        // The progress interval (50 ms) + a round trip + the watch interval (20 ms), with
        // room for a loaded CI machine.
        assert!(*worst < Duration::from_secs(2), "{lateness:?}");
        a.stop().await;
        b.stop().await;
    }
}
