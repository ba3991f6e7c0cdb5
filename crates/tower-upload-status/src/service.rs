//! [`UploadStatusService`]: answers `?key=K&command=status|cancel|fileSize|watch` and
//! `?X-Progress-ID=K`.

use std::borrow::Cow;
use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::ACCEPT;
use http::{HeaderName, Method, Request, Response};
use tower_service::Service;
use tower_upload_state::{Command, KeyError, QueryError, UploadInfo, UploadKey, UploadRegistry};

use crate::answer::{self, Refusal, StatusResponse};
use crate::watch::{self, Slot, WatchConfig, WatchRequest};
use crate::{nginx, ResponseBody, ResponseFuture};

/// The key parameter and header of nginx's upload progress module.
const X_PROGRESS_ID: &str = "X-Progress-ID";

/// The igUpload status handler: answers the widget's `status`, `cancel` and `fileSize`
/// commands from an [`UploadRegistry`].
///
/// A leaf service for requests with any body type (the body is never read); see the
/// [crate docs](crate) for the protocol, the answers and the error codes.
///
/// Cloning is cheap: it clones the registry handle, an [`Arc`](std::sync::Arc).
///
/// # Example
///
/// ```
/// use bytes::Bytes;
/// use http::{Request, StatusCode};
/// use http_body_util::{BodyExt, Empty};
/// use tower::ServiceExt;
/// use tower_upload_state::UploadRegistry;
/// use tower_upload_status::UploadStatusService;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let service = UploadStatusService::new(UploadRegistry::new());
///
/// // A key the registry does not know: status 3 (NoSuchFile), error 5 (KeyFileNotFound).
/// let request = Request::get("/status?key=nobody&command=status").body(Empty::<Bytes>::new())?;
/// let response = service.clone().oneshot(request).await?;
/// assert_eq!(response.status(), StatusCode::OK);
/// let body = response.into_body().collect().await?.to_bytes();
/// assert_eq!(body, r#"{"status":3,"error":5,"bytesUploaded":0,"size":0,"serverMessage":""}"#);
///
/// // A request the widget never sends.
/// let request = Request::get("/status?command=status").body(Empty::<Bytes>::new())?;
/// let response = service.oneshot(request).await?;
/// assert_eq!(response.status(), StatusCode::BAD_REQUEST);
/// let body = response.into_body().collect().await?.to_bytes();
/// assert!(body.starts_with(br#"{"error":"missing_key","#));
/// # Ok(())
/// # }
/// ```
#[doc(alias = "IGUploadStatusHandler")]
#[derive(Clone)]
pub struct UploadStatusService {
    registry: UploadRegistry,
    /// The deprecated override of the registry's owner binding.
    owner: Option<OwnerFn>,
    /// The settings of `command=watch` and its count of open streams.
    watch: Arc<WatchConfig>,
}

/// Maps a request to its owner (see the deprecated [`UploadStatusService::owner`]).
type OwnerFn = Arc<dyn Fn(&http::request::Parts) -> Option<String> + Send + Sync>;

impl fmt::Debug for UploadStatusService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UploadStatusService")
            .field("registry", &self.registry)
            .field("owner", &self.owner.as_ref().map(|_| ".."))
            .field("watch", &self.watch)
            .finish()
    }
}

impl UploadStatusService {
    /// A service answering from `registry`: give it a clone of the registry the upload layer
    /// writes.
    #[must_use]
    pub fn new(registry: UploadRegistry) -> Self {
        Self {
            registry,
            owner: None,
            watch: Arc::default(),
        }
    }

    /// The least time between two progress events of one `command=watch` stream (default
    /// 250 ms): byte counts are looked at, and reported if they changed, at this pace. A
    /// change of status (a terminal one above all) is pushed at once.
    #[must_use]
    pub fn watch_interval(mut self, interval: Duration) -> Self {
        Arc::make_mut(&mut self.watch).interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How long an event stream may stay silent before a comment line (`:`) is sent, so
    /// that proxies and load balancers do not close it as idle (default 15 s).
    #[must_use]
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        Arc::make_mut(&mut self.watch).heartbeat = interval.max(Duration::from_millis(1));
        self
    }

    /// The most event streams open at once, over every clone of this service (default
    /// 10 000); one more is answered 503 (`too_many_watchers`, with `Retry-After`).
    #[must_use]
    pub fn max_watchers(mut self, max: usize) -> Self {
        Arc::make_mut(&mut self.watch).max_watchers = max;
        self
    }

    /// How many unsent frames one event stream may hold (default 8) before its client
    /// counts as lagging: the stream then ends, its memory is freed, and the client's
    /// `EventSource` reconnects to the current state.
    #[must_use]
    pub fn watch_buffer(mut self, frames: usize) -> Self {
        Arc::make_mut(&mut self.watch).buffer = frames.max(1);
        self
    }

    /// How many event streams are open now (over every clone of this service).
    #[must_use]
    pub fn watchers(&self) -> usize {
        self.watch.open.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Finds the owner of a request with `owner` instead of the registry's binding.
    ///
    /// Deprecated: define the binding once, on the registry, with
    /// [`UploadRegistry::with_owner`]; this service (and the upload layer) then apply it
    /// without being told. Until it is removed, this override still works as before: a
    /// request sees and cancels only the keys whose upload was bound to its owner (an upload
    /// without an owner is nobody's), anyone else gets status 3 / error 5 as for an unknown
    /// key; and a `fileSize` answer is taken only by the owner it was recorded for.
    #[deprecated(
        note = "bind owners once with `UploadRegistry::with_owner`; both services apply it"
    )]
    #[must_use]
    pub fn owner<F>(mut self, owner: F) -> Self
    where
        F: Fn(&http::request::Parts) -> Option<String> + Send + Sync + 'static,
    {
        self.owner = Some(Arc::new(owner));
        self
    }

    /// The registry this service answers from.
    #[must_use]
    pub fn registry(&self) -> &UploadRegistry {
        &self.registry
    }

    /// Checks the method and the query, which needs no registry; borrows the key.
    fn check<B>(req: &Request<B>) -> Result<Asked<'_>, Refusal> {
        if req.method() != Method::GET && req.method() != Method::POST {
            return Err(Refusal::Method);
        }
        let raw = req.uri().query().unwrap_or("");
        let query = crate::query::parse(raw)?;
        let Some(key) = query.key else {
            if let Some(asked) = nginx_query(raw, req.headers())? {
                return Ok(asked);
            }
            return Err(KeyError::Missing.into());
        };
        let watch = || Asked::Watch {
            last_event_id: LastEventId::of(req.headers()),
            keys: key.clone(),
        };
        // A batch of keys is checked when the stream starts; every other key first, before
        // the command (the documented order).
        if query
            .command
            .as_deref()
            .is_some_and(|command| command.eq_ignore_ascii_case("watch"))
        {
            return Ok(watch());
        }
        UploadKey::check(&key)?;
        let command = query
            .command
            .as_deref()
            .ok_or_else(Refusal::missing_command)?;
        let command = Command::parse(command)?;
        if command == Command::Status && accepts_event_stream(req.headers()) {
            return Ok(watch());
        }
        Ok(Asked::Command(key, command))
    }

    /// Whose request it is, by the deprecated override or the registry's binding.
    fn requester(&self, parts: &http::request::Parts) -> Requester {
        match &self.owner {
            Some(owner) => Requester {
                owner: owner(parts),
                strict: true,
            },
            None => Requester {
                owner: self.registry.owner_of(parts),
                strict: false,
            },
        }
    }
}

/// What a request asks, once checked.
#[derive(Debug)]
enum Asked<'a> {
    /// `key=K&command=C`, with a valid key.
    Command(Cow<'a, str>, Command),
    /// `command=watch` (or `command=status` with `Accept: text/event-stream`): a key or a
    /// batch, not checked yet, and the `Last-Event-ID` of a reconnect.
    Watch {
        keys: Cow<'a, str>,
        last_event_id: Option<LastEventId>,
    },
    /// nginx's `X-Progress-ID=K` (a valid key) and an optional (safe) JSONP callback.
    Nginx(Cow<'a, str>, Option<Cow<'a, str>>),
}

impl Asked<'_> {
    fn into_owned(self) -> Asked<'static> {
        let owned = |text: Cow<'_, str>| Cow::Owned(text.into_owned());
        match self {
            Self::Command(key, command) => Asked::Command(owned(key), command),
            Self::Watch {
                keys,
                last_event_id,
            } => Asked::Watch {
                keys: owned(keys),
                last_event_id,
            },
            Self::Nginx(key, callback) => Asked::Nginx(owned(key), callback.map(owned)),
        }
    }
}

/// The `Last-Event-ID` a reconnecting `EventSource` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LastEventId {
    /// It saw the stream's last event.
    End,
    /// It saw the event with this number (anything else is ignored).
    Number(u64),
}

impl LastEventId {
    fn of(headers: &http::HeaderMap) -> Option<Self> {
        let id = headers
            .get(HeaderName::from_static("last-event-id"))?
            .as_bytes();
        if id == watch::END_ID.as_bytes() {
            return Some(Self::End);
        }
        let id = std::str::from_utf8(id).ok()?.trim().parse().ok()?;
        Some(Self::Number(id))
    }
}

/// The nginx dialect: `X-Progress-ID` (query parameter, else header) and `callback`.
fn nginx_query<'a>(
    raw: &'a str,
    headers: &'a http::HeaderMap,
) -> Result<Option<Asked<'a>>, Refusal> {
    let (mut id, mut callback) = (None, None);
    for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
        let slot = if name.eq_ignore_ascii_case(X_PROGRESS_ID) {
            &mut id
        } else if name == "callback" {
            &mut callback
        } else {
            continue;
        };
        if slot.is_some() {
            let name = if name == "callback" {
                "callback"
            } else {
                X_PROGRESS_ID
            };
            return Err(QueryError::Repeated(name).into());
        }
        *slot = Some(value);
    }
    let id = match id {
        Some(id) => id,
        None => match headers.get(HeaderName::from_static("x-progress-id")) {
            Some(value) => Cow::Borrowed(value.to_str().map_err(|_| KeyError::Empty)?),
            None => return Ok(None),
        },
    };
    UploadKey::check(&id)?;
    if let Some(callback) = &callback {
        if !nginx::is_callback(callback) {
            return Err(Refusal::Query {
                code: "bad_query",
                message: format!(
                    "the `callback` query parameter must be a JavaScript name of at most {} \
                     characters (letters, digits, `_`, `$`, dots)",
                    nginx::MAX_CALLBACK_LEN
                ),
            });
        }
    }
    Ok(Some(Asked::Nginx(id, callback)))
}

/// Whether the request's `Accept` names `text/event-stream` (as `EventSource` sends it).
fn accepts_event_stream(headers: &http::HeaderMap) -> bool {
    headers.get_all(ACCEPT).iter().any(|value| {
        value
            .as_bytes()
            .windows(17)
            .any(|window| window.eq_ignore_ascii_case(b"text/event-stream"))
    })
}

/// Whose request it is (by default: nobody's, without an owner binding).
#[derive(Debug, Default)]
struct Requester {
    /// The owner the binding found (`None`: anonymous, or no binding).
    owner: Option<String>,
    /// Set by the deprecated [`UploadStatusService::owner`]: keys without an owner are
    /// nobody's, as that override always had it.
    strict: bool,
}

impl Requester {
    fn may_see(&self, info: &UploadInfo) -> bool {
        !self.strict || info.owner.is_some()
    }
}

/// Asks the registry and answers; the future this makes is what [`ResponseFuture`] boxes.
///
/// Every command goes through the registry's owner rule
/// ([`UploadInfo::is_foreign_to`](tower_upload_state::UploadInfo::is_foreign_to)): a key
/// that belongs to someone else answers as an unknown key, and a stranger's cancel or
/// `fileSize` changes nothing.
async fn answer(
    registry: UploadRegistry,
    key: UploadKey,
    command: Command,
    requester: Requester,
) -> StatusResponse {
    let owner = requester.owner.as_deref();
    let result = match command {
        Command::Status => registry.snapshot_for(&key, owner).await.map(|info| {
            let info = info.filter(|info| requester.may_see(info));
            answer::status(info.as_ref())
        }),
        Command::Cancel if requester.strict => match registry.snapshot_for(&key, owner).await {
            Ok(Some(info)) if requester.may_see(&info) => registry
                .cancel_for(&key, owner)
                .await
                .map(|info| answer::status(info.as_ref())),
            Ok(_) => Ok(answer::status(None)),
            Err(error) => Err(error),
        },
        Command::Cancel => registry
            .cancel_for(&key, owner)
            .await
            .map(|info| answer::status(info.as_ref())),
        Command::FileSize => registry
            .take_file_size_for(&key, owner)
            .await
            .map(answer::file_size),
    };
    result.unwrap_or_else(|error| answer::store_unavailable(&error))
}

impl<B> Service<Request<B>> for UploadStatusService {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    #[inline]
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The body is never read, and the future does not hold the request.
        let asked = match Self::check(&req) {
            Ok(asked) => asked,
            Err(refusal) => return ResponseFuture::ready(refusal.into_response()),
        };
        if self.owner.is_none() && !self.registry.binds_owners() {
            return self.respond(asked, Requester::default());
        }
        // An owner binding reads the request's parts: take it apart, keeping what was asked.
        let asked = asked.into_owned();
        let (parts, _body) = req.into_parts();
        let requester = self.requester(&parts);
        self.respond(asked, requester)
    }
}

impl UploadStatusService {
    fn respond(&self, asked: Asked<'_>, requester: Requester) -> ResponseFuture {
        match asked {
            Asked::Command(key, command) => {
                if command == Command::Status && !requester.strict {
                    // The fast path: answered from the live table or an in-process store,
                    // without a key, a clone of the record or a boxed future.
                    let owner = requester.owner.as_deref();
                    let body = self.registry.inspect_for(&key, owner, answer::status_body);
                    if let Some(body) = body {
                        return ResponseFuture::ready(answer::json_ok(body));
                    }
                }
                let key = UploadKey::parse(&key).expect("checked in `check`");
                ResponseFuture::registry(answer(self.registry.clone(), key, command, requester))
            }
            Asked::Nginx(key, callback) => {
                let owner = requester.owner.as_deref();
                let callback = callback.as_deref();
                if !requester.strict {
                    if let Some(response) = self
                        .registry
                        .inspect_for(&key, owner, |info| nginx::answer(info, callback))
                    {
                        return ResponseFuture::ready(response);
                    }
                }
                let key = UploadKey::parse(&key).expect("checked in `check`");
                let callback = callback.map(str::to_owned);
                let registry = self.registry.clone();
                ResponseFuture::registry(async move {
                    match registry
                        .snapshot_for(&key, requester.owner.as_deref())
                        .await
                    {
                        Ok(info) => {
                            let info = info.filter(|info| requester.may_see(info));
                            nginx::answer(info.as_ref(), callback.as_deref())
                        }
                        Err(error) => answer::store_unavailable(&error),
                    }
                })
            }
            Asked::Watch {
                keys,
                last_event_id,
            } => {
                let keys = match UploadKey::parse_batch(&keys) {
                    Ok(keys) => keys,
                    Err(error) => {
                        return ResponseFuture::ready(Refusal::from(error).into_response())
                    }
                };
                let first_id = match last_event_id {
                    Some(LastEventId::End) => return ResponseFuture::ready(watch::ended()),
                    Some(LastEventId::Number(id)) => id.saturating_add(1),
                    None => 1,
                };
                let Some(slot) = Slot::acquire(&self.watch) else {
                    return ResponseFuture::ready(answer::too_many_watchers());
                };
                let request = WatchRequest {
                    keys,
                    owner: requester.owner,
                    strict: requester.strict,
                    first_id,
                };
                ResponseFuture::registry(watch::start(
                    self.registry.clone(),
                    request,
                    Arc::clone(&self.watch),
                    slot,
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;
    use std::time::Duration;

    use bytes::Bytes;
    use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE};
    use http::StatusCode;
    use http_body_util::{BodyExt, Empty};
    use serde_json::{json, Value};
    use tower::ServiceExt;
    use tower_upload_state::{
        ClaimError, FileError, ProgressStore, StoreError, StoreFuture, UploadHandle, UploadInfo,
        UploadStatus,
    };

    use super::*;

    fn key(text: &str) -> UploadKey {
        UploadKey::parse(text).unwrap()
    }

    async fn begin(registry: &UploadRegistry, text: &str) -> UploadHandle {
        registry.begin(UploadInfo::new(key(text))).await.unwrap()
    }

    /// Sends `method uri` with an empty body; returns the status and the parsed JSON body,
    /// after checking the headers every answer has.
    async fn ask(registry: &UploadRegistry, method: Method, uri: &str) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = UploadStatusService::new(registry.clone())
            .oneshot(request)
            .await
            .unwrap();
        read(response).await
    }

    async fn get(registry: &UploadRegistry, uri: &str) -> (StatusCode, Value) {
        ask(registry, Method::GET, uri).await
    }

    async fn read(response: Response<ResponseBody>) -> (StatusCode, Value) {
        let status = response.status();
        let headers = response.headers();
        assert_eq!(headers[CONTENT_TYPE], "application/json", "{status}");
        assert_eq!(headers[CACHE_CONTROL], "no-store", "{status}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&body)));
        (status, json)
    }

    fn status_json(status: u8, error: i8, bytes: u64, size: u64, message: &str) -> Value {
        json!({
            "status": status,
            "error": error,
            "bytesUploaded": bytes,
            "size": size,
            "serverMessage": message,
        })
    }

    fn no_such_file() -> Value {
        status_json(3, 5, 0, 0, "")
    }

    #[tokio::test]
    async fn status_of_a_live_upload_shows_its_progress() {
        let registry = UploadRegistry::new();
        let upload = begin(&registry, "live").await;
        assert_eq!(
            get(&registry, "/s?key=live&command=status").await,
            (StatusCode::OK, status_json(0, -1, 0, 0, ""))
        );
        upload.set_status(UploadStatus::Started).await.unwrap();
        upload.update(|info| info.size = Some(1000));
        upload.add_bytes(300);
        upload.add_bytes(100);
        assert_eq!(
            get(&registry, "/s?key=live&command=status").await,
            (StatusCode::OK, status_json(1, -1, 400, 1000, ""))
        );
        upload
            .finish(UploadStatus::Finished, FileError::None, None)
            .await;
    }

    #[tokio::test]
    async fn status_of_finished_and_rejected_uploads() {
        let registry = UploadRegistry::new();
        let upload = begin(&registry, "done").await;
        upload.update(|info| info.size = Some(5));
        upload.add_bytes(5);
        upload
            .finish(UploadStatus::Finished, FileError::None, None)
            .await;
        assert_eq!(
            get(&registry, "/s?key=done&command=status").await,
            (StatusCode::OK, status_json(2, -1, 5, 5, ""))
        );

        let upload = begin(&registry, "big").await;
        upload.add_bytes(4096);
        upload
            .finish(
                UploadStatus::FileSizeExceeded,
                FileError::FileSizeExceeded,
                Some("the file is larger than 4 KiB".into()),
            )
            .await;
        assert_eq!(
            get(&registry, "/s?key=big&command=status").await,
            (
                StatusCode::OK,
                status_json(5, 2, 4096, 4096, "the file is larger than 4 KiB")
            )
        );

        let upload = begin(&registry, "vetoed").await;
        upload
            .finish(
                UploadStatus::CanceledByEvent,
                FileError::ServerSideCancel,
                Some("no \"exe\" files, please".into()),
            )
            .await;
        assert_eq!(
            get(&registry, "/s?key=vetoed&command=status").await,
            (
                StatusCode::OK,
                status_json(7, 10, 0, 0, "no \"exe\" files, please")
            )
        );
    }

    #[tokio::test]
    async fn status_of_an_unknown_key_is_no_such_file() {
        let registry = UploadRegistry::new();
        assert_eq!(
            get(&registry, "/s?key=nobody&command=status").await,
            (StatusCode::OK, no_such_file())
        );
    }

    #[tokio::test]
    async fn cancel_wakes_a_live_upload() {
        let registry = UploadRegistry::new();
        let upload = begin(&registry, "c1").await;
        upload.set_status(UploadStatus::Started).await.unwrap();
        upload.add_bytes(10);
        let (waiting_tx, waiting_rx) = tokio::sync::oneshot::channel();
        let streaming = tokio::spawn(async move {
            let cancelled = upload.cancelled();
            let _ = waiting_tx.send(());
            cancelled.await;
            upload
        });
        waiting_rx.await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!streaming.is_finished(), "nothing asked it to stop yet");

        // The answer is the state when asked: still streaming.
        assert_eq!(
            get(&registry, "/s?key=c1&command=cancel").await,
            (StatusCode::OK, status_json(1, -1, 10, 10, ""))
        );
        let upload = tokio::time::timeout(Duration::from_secs(5), streaming)
            .await
            .expect("cancel wakes the upload")
            .unwrap();
        assert!(upload.is_cancel_requested());

        // What the layer does next; then the status tells.
        upload
            .finish(UploadStatus::CanceledByClientCommand, FileError::None, None)
            .await;
        assert_eq!(
            get(&registry, "/s?key=c1&command=status").await,
            (StatusCode::OK, status_json(4, -1, 10, 10, ""))
        );
    }

    #[tokio::test]
    async fn cancel_of_an_unknown_or_finished_key_answers_its_state() {
        let registry = UploadRegistry::new();
        assert_eq!(
            get(&registry, "/s?key=nobody&command=cancel").await,
            (StatusCode::OK, no_such_file())
        );

        let upload = begin(&registry, "done").await;
        upload.add_bytes(7);
        upload
            .finish(UploadStatus::Finished, FileError::None, None)
            .await;
        for _ in 0..2 {
            assert_eq!(
                get(&registry, "/s?key=done&command=cancel").await,
                (StatusCode::OK, status_json(2, -1, 7, 7, ""))
            );
        }
        assert_eq!(
            get(&registry, "/s?key=done&command=status").await,
            (StatusCode::OK, status_json(2, -1, 7, 7, "")),
            "a cancel after the end changes nothing"
        );
    }

    #[tokio::test]
    async fn file_size_is_read_once() {
        let registry = UploadRegistry::new();
        registry
            .record_file_size(&key("fs"), 123_456)
            .await
            .unwrap();
        assert_eq!(
            get(&registry, "/s?key=fs&command=fileSize").await,
            (StatusCode::OK, json!({"fileSize": 123_456}))
        );
        let unknown = (StatusCode::OK, json!({"fileSize": null, "error": 5}));
        assert_eq!(get(&registry, "/s?key=fs&command=fileSize").await, unknown);
        assert_eq!(
            get(&registry, "/s?key=nobody&command=filesize").await,
            unknown
        );
    }

    fn user(parts: &http::request::Parts) -> Option<String> {
        parts
            .headers
            .get("x-user")?
            .to_str()
            .ok()
            .map(str::to_owned)
    }

    /// `command` for `key` as `who` (`None`: no `x-user` header), through `service`.
    async fn ask_as(
        service: &UploadStatusService,
        command: &str,
        key: &str,
        who: Option<&str>,
    ) -> Value {
        let mut request = Request::get(format!("/s?key={key}&command={command}"));
        if let Some(who) = who {
            request = request.header("x-user", who);
        }
        let response = service
            .clone()
            .oneshot(request.body(Empty::<Bytes>::new()).unwrap())
            .await
            .unwrap();
        let (status, body) = read(response).await;
        assert_eq!(status, StatusCode::OK);
        body
    }

    fn owned(text: &str, owner: Option<&str>) -> UploadInfo {
        let mut info = UploadInfo::new(key(text));
        info.owner = owner.map(str::to_owned);
        info
    }

    #[tokio::test]
    async fn the_registrys_owner_binding_hides_keys_from_strangers() {
        let registry = UploadRegistry::new().with_owner(user);
        let service = UploadStatusService::new(registry.clone());
        let upload = registry.begin(owned("mine", Some("alice"))).await.unwrap();
        upload.add_bytes(3);
        registry
            .record_file_size_for(&key("mine"), 77, Some("alice"))
            .await
            .unwrap();
        for stranger in [Some("mallory"), None] {
            for command in ["status", "cancel"] {
                assert_eq!(
                    ask_as(&service, command, "mine", stranger).await,
                    no_such_file(),
                    "{command} as {stranger:?}"
                );
            }
            assert_eq!(
                ask_as(&service, "fileSize", "mine", stranger).await,
                json!({"fileSize": null, "error": 5})
            );
        }
        assert!(
            !upload.is_cancel_requested(),
            "a stranger's cancel changes nothing"
        );
        assert_eq!(
            ask_as(&service, "status", "mine", Some("alice")).await,
            status_json(0, -1, 3, 3, "")
        );
        assert_eq!(
            ask_as(&service, "fileSize", "mine", Some("alice")).await,
            json!({"fileSize": 77}),
            "a stranger's fileSize does not consume the answer"
        );
        ask_as(&service, "cancel", "mine", Some("alice")).await;
        assert!(upload.is_cancel_requested());
        upload
            .finish(UploadStatus::CanceledByClientCommand, FileError::None, None)
            .await;
    }

    #[tokio::test]
    #[allow(deprecated)]
    async fn the_deprecated_owner_override_still_works() {
        let registry = UploadRegistry::new();
        let service = UploadStatusService::new(registry.clone()).owner(user);
        let upload = registry.begin(owned("o", Some("alice"))).await.unwrap();
        let anonymous = registry.begin(owned("anon", None)).await.unwrap();
        assert_eq!(
            ask_as(&service, "status", "o", Some("mallory")).await,
            no_such_file()
        );
        assert_eq!(ask_as(&service, "cancel", "o", None).await, no_such_file());
        assert!(!upload.is_cancel_requested());
        // As before: an upload without an owner is nobody's.
        assert_eq!(
            ask_as(&service, "status", "anon", None).await,
            no_such_file()
        );
        assert_eq!(
            ask_as(&service, "status", "o", Some("alice")).await,
            status_json(0, -1, 0, 0, "")
        );
        ask_as(&service, "cancel", "o", Some("alice")).await;
        assert!(upload.is_cancel_requested());
        upload.abandon().await;
        anonymous.abandon().await;
    }

    #[tokio::test]
    async fn bad_queries_get_400_with_a_code_and_a_message() {
        let registry = UploadRegistry::new();
        let long_key = format!("/s?command=status&key={}", "k".repeat(129));
        let long_cid = format!("/s?command=status&key=k&cid={}", "c".repeat(129));
        let cases: &[(&str, &str, &str)] = &[
            ("/s", "missing_key", "`key`"),
            ("/s?command=status", "missing_key", "`key`"),
            ("/s?key=&command=status", "invalid_key", "empty"),
            ("/s?key=a/b&command=status", "invalid_key", "'/'"),
            ("/s?key=%2E%2E%2Fetc&command=status", "invalid_key", "'/'"),
            ("/s?key=a;b&command=status", "invalid_key", "';'"),
            ("/s?key=a%3Bb&command=status", "invalid_key", "';'"),
            (&long_key, "invalid_key", "129 bytes"),
            ("/s?key=k", "missing_command", "`command`"),
            ("/s?key=k&_=1", "missing_command", "`command`"),
            ("/s?key=k&command=", "unknown_command", "unknown command"),
            ("/s?key=k&command=delete", "unknown_command", "\"delete\""),
            ("/s?key=k&key=k&command=status", "bad_query", "`key`"),
            (
                "/s?key=k&command=status&command=cancel",
                "bad_query",
                "`command`",
            ),
            ("/s?key=k&command=status&cid=a&cid=b", "bad_query", "`cid`"),
            (&long_cid, "bad_query", "128 bytes"),
        ];
        for &(uri, code, in_message) in cases {
            let (status, body) = get(&registry, uri).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
            let fields: Vec<&str> = body
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(fields, ["error", "message"], "{uri}");
            assert_eq!(body["error"], code, "{uri}");
            let message = body["message"].as_str().unwrap();
            assert!(message.contains(in_message), "{uri}: {message}");
        }
        // POST is checked the same way.
        let (status, body) = ask(&registry, Method::POST, "/s?command=status").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"], "missing_key");
    }

    #[tokio::test]
    async fn other_methods_get_405_with_allow() {
        let registry = UploadRegistry::new();
        for method in [
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::HEAD,
            Method::OPTIONS,
        ] {
            let request = Request::builder()
                .method(method.clone())
                .uri("/s?key=k&command=status")
                .body(Empty::<Bytes>::new())
                .unwrap();
            let response = UploadStatusService::new(registry.clone())
                .oneshot(request)
                .await
                .unwrap();
            assert_eq!(response.headers()[ALLOW], "GET, POST", "{method}");
            let (status, body) = read(response).await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
            assert_eq!(body["error"], "method_not_allowed", "{method}");
        }
        // Even a request without a query: the method is checked first.
        let (status, _) = ask(&registry, Method::DELETE, "/s").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    }

    #[tokio::test]
    async fn post_works_like_get() {
        let registry = UploadRegistry::new();
        let upload = begin(&registry, "p").await;
        upload.add_bytes(3);
        for command in ["status", "cancel"] {
            let uri = format!("/s?key=p&command={command}");
            assert_eq!(
                ask(&registry, Method::POST, &uri).await,
                get(&registry, &uri).await
            );
        }
        assert!(upload.is_cancel_requested());
        registry.record_file_size(&key("p"), 9).await.unwrap();
        assert_eq!(
            ask(&registry, Method::POST, "/s?key=p&command=fileSize").await,
            (StatusCode::OK, json!({"fileSize": 9}))
        );
        upload
            .finish(UploadStatus::CanceledByClientCommand, FileError::None, None)
            .await;
    }

    #[tokio::test]
    async fn other_parameters_case_and_percent_encoding() {
        let registry = UploadRegistry::new();
        let upload = begin(&registry, "ab-cd_9.z").await;
        upload.add_bytes(2);
        let expected = (StatusCode::OK, status_json(0, -1, 2, 2, ""));
        for uri in [
            "/s?key=ab-cd_9.z&command=status",
            "/s?key=ab-cd_9.z&command=status&_=1700000000123",
            "/s?_=1&cid=&multiple=true&command=status&key=ab-cd_9.z",
            "/s?key=ab%2Dcd%5F9%2Ez&command=status",
            "/s?key=ab-cd_9.z&command=%73tatus",
            "/s?key=ab-cd_9.z&command=STATUS",
            "/any/path/at/all?key=ab-cd_9.z&command=Status",
        ] {
            assert_eq!(get(&registry, uri).await, expected, "{uri}");
        }
        drop(upload);
    }

    /// A store that is down: every call fails, with an error that names an internal host.
    #[derive(Debug)]
    struct DownStore;

    fn down<'a, T: Send + 'a>() -> StoreFuture<'a, Result<T, StoreError>> {
        Box::pin(std::future::ready(Err(StoreError::new(
            "connection refused: redis://10.0.0.7:6379",
        ))))
    }

    impl ProgressStore for DownStore {
        fn claim<'a>(&'a self, _: &'a UploadInfo) -> StoreFuture<'a, Result<(), ClaimError>> {
            Box::pin(async { down::<()>().await.map_err(ClaimError::from) })
        }
        fn save<'a>(&'a self, _: &'a UploadInfo) -> StoreFuture<'a, Result<(), StoreError>> {
            down()
        }
        fn remove<'a>(&'a self, _: &'a UploadKey) -> StoreFuture<'a, Result<(), StoreError>> {
            down()
        }
        fn load<'a>(
            &'a self,
            _: &'a UploadKey,
        ) -> StoreFuture<'a, Result<Option<UploadInfo>, StoreError>> {
            down()
        }
        fn put_file_size<'a>(
            &'a self,
            _: &'a UploadKey,
            _: u64,
        ) -> StoreFuture<'a, Result<(), StoreError>> {
            down()
        }
        fn take_file_size<'a>(
            &'a self,
            _: &'a UploadKey,
        ) -> StoreFuture<'a, Result<Option<u64>, StoreError>> {
            down()
        }
        fn retention(&self) -> Duration {
            Duration::from_secs(60)
        }
    }

    #[tokio::test]
    async fn a_failing_store_gets_503_without_its_details() {
        let registry = UploadRegistry::with_store(DownStore);
        for command in ["status", "cancel", "fileSize"] {
            let uri = format!("/s?key=k&command={command}");
            let (status, body) = get(&registry, &uri).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{command}");
            assert_eq!(body["error"], "store_unavailable", "{command}");
            assert_eq!(
                body,
                json!({
                    "error": "store_unavailable",
                    "message": "the upload store is unavailable; try again later"
                }),
                "{command}: a fixed answer, never the store's error"
            );
        }
        // Bad requests are still told what is wrong: they never reach the store.
        let (status, body) = get(&registry, "/s?key=k").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"], "missing_command");
    }

    #[tokio::test]
    async fn any_request_body_type_is_accepted_and_never_read() {
        let registry = UploadRegistry::new();
        let service = UploadStatusService::new(registry.clone());
        let uri = "/s?key=nobody&command=status";

        let response = service
            .clone()
            .oneshot(Request::get(uri).body(String::from("ignored")).unwrap())
            .await
            .unwrap();
        assert_eq!(read(response).await, (StatusCode::OK, no_such_file()));

        let response = service
            .clone()
            .oneshot(Request::post(uri).body(()).unwrap())
            .await
            .unwrap();
        assert_eq!(read(response).await, (StatusCode::OK, no_such_file()));

        // A body that is neither `Send` nor a `http_body::Body`: the future does not hold it.
        // (`poll_ready` is always ready, so `call` may come first.)
        let future = service
            .clone()
            .call(Request::get(uri).body(Rc::new(())).unwrap());
        let response = tokio::spawn(future).await.unwrap().unwrap();
        assert_eq!(read(response).await, (StatusCode::OK, no_such_file()));
    }

    #[test]
    fn futures_and_services_fit_every_server() {
        fn send_sync_static<T: Send + Sync + 'static>() {}
        fn send_static<T: Send + 'static>() {}
        send_sync_static::<UploadStatusService>();
        send_static::<ResponseFuture>();
        send_static::<<UploadStatusService as Service<Request<Rc<()>>>>::Future>();
    }

    #[tokio::test]
    async fn mounts_on_an_axum_router() {
        let registry = UploadRegistry::new();
        let upload = begin(&registry, "ax").await;
        upload.add_bytes(1);
        let app = axum::Router::new()
            .route_service("/upload/status", UploadStatusService::new(registry.clone()));
        let request = Request::get("/upload/status?key=ax&command=status&_=9")
            .body(axum::body::Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body, status_json(0, -1, 1, 1, ""));
        drop(upload);
    }

    #[tokio::test]
    async fn ready_futures_answer_once_and_debug_print() {
        let mut service = UploadStatusService::new(UploadRegistry::new());
        assert!(format!("{service:?}").starts_with("UploadStatusService"));
        let future = service.call(Request::put("/s").body(()).unwrap());
        assert!(format!("{future:?}").contains("405"), "{future:?}");
        // A status from the memory store is answered in `call`, without a boxed future...
        let future = service.call(Request::get("/s?key=k&command=status").body(()).unwrap());
        assert!(
            format!("{future:?}").contains("answered: 200"),
            "{future:?}"
        );
        assert_eq!(future.await.unwrap().status(), StatusCode::OK);
        // ...a cancel asks the registry.
        let future = service.call(Request::get("/s?key=k&command=cancel").body(()).unwrap());
        assert!(
            format!("{future:?}").contains("asking_registry"),
            "{future:?}"
        );
        assert_eq!(future.await.unwrap().status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_shared_store_takes_the_boxed_path_with_the_same_answers() {
        // `DownStore`-like but working: the memory store behind a wrapper that cannot
        // answer synchronously.
        #[derive(Debug)]
        struct Slow(tower_upload_state::MemoryStore);
        impl ProgressStore for Slow {
            fn claim<'a>(&'a self, i: &'a UploadInfo) -> StoreFuture<'a, Result<(), ClaimError>> {
                self.0.claim(i)
            }
            fn save<'a>(&'a self, i: &'a UploadInfo) -> StoreFuture<'a, Result<(), StoreError>> {
                self.0.save(i)
            }
            fn remove<'a>(&'a self, k: &'a UploadKey) -> StoreFuture<'a, Result<(), StoreError>> {
                self.0.remove(k)
            }
            fn load<'a>(
                &'a self,
                k: &'a UploadKey,
            ) -> StoreFuture<'a, Result<Option<UploadInfo>, StoreError>> {
                self.0.load(k)
            }
            fn put_file_size<'a>(
                &'a self,
                k: &'a UploadKey,
                n: u64,
            ) -> StoreFuture<'a, Result<(), StoreError>> {
                self.0.put_file_size(k, n)
            }
            fn take_file_size<'a>(
                &'a self,
                k: &'a UploadKey,
            ) -> StoreFuture<'a, Result<Option<u64>, StoreError>> {
                self.0.take_file_size(k)
            }
            fn retention(&self) -> Duration {
                self.0.retention()
            }
        }
        let registry = UploadRegistry::with_store(Slow(tower_upload_state::MemoryStore::new()));
        let upload = begin(&registry, "done").await;
        upload.add_bytes(4);
        upload
            .finish(UploadStatus::Finished, FileError::None, None)
            .await;
        let mut service = UploadStatusService::new(registry.clone());
        let future = service.call(Request::get("/s?key=done&command=status").body(()).unwrap());
        assert!(
            format!("{future:?}").contains("asking_registry"),
            "{future:?}"
        );
        assert_eq!(
            get(&registry, "/s?key=done&command=status").await,
            (StatusCode::OK, status_json(2, -1, 4, 4, ""))
        );
        assert_eq!(
            get(&registry, "/s?key=nobody&command=status").await,
            (StatusCode::OK, no_such_file())
        );
    }
}
