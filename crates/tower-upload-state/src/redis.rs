//! [`RedisStore`]: upload records in Redis, shared by several server instances.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};

use crate::store::{
    CancelCallback, Claim, ClaimError, ClaimToken, ProgressStore, SaveCallback, StoreError,
    StoreFuture,
};
use crate::sync::lock;
use crate::{UploadInfo, UploadKey, DEFAULT_RETENTION};

/// Claims a key.
///
/// KEYS: record, cancel flag. ARGV: status, JSON record, TTL (ms), error code, claim token,
/// whether the claimant has an owner ('1'/'0'), the owner, whether owners are bound ('1'/'0').
///
/// Refuses, in this order: a record of another owner (the rule of
/// `UploadInfo::is_foreign_to`), one in flight (0, 1, 9), one ended in a replayed verdict;
/// replaces anything else and clears a stale cancel flag. The replay rule mirrors
/// `code::replays_verdict` (`UploadInfo::is_replayed_verdict`): status 4, 5, 7, and 6 only
/// with error 0, 1 or 4. Change them together.
const CLAIM: &str = r"
local status = redis.call('HGET', KEYS[1], 'status')
if status then
  local owner = redis.call('HGET', KEYS[1], 'owner')
  local mine = false
  if ARGV[6] == '1' then mine = ARGV[7] end
  if owner ~= mine and (owner or ARGV[8] == '1') then return {'foreign'} end
  local s = tonumber(status)
  if s == 0 or s == 1 or s == 9 then return {'in_flight'} end
  local e = tonumber(redis.call('HGET', KEYS[1], 'error') or '-1')
  if s == 4 or s == 5 or s == 7 or (s == 6 and (e == 0 or e == 1 or e == 4)) then
    return {'rejected', redis.call('HGET', KEYS[1], 'info')}
  end
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'info', ARGV[2], 'error', ARGV[4], 'token', ARGV[5])
if ARGV[6] == '1' then redis.call('HSET', KEYS[1], 'owner', ARGV[7]) end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {'ok'}
";

/// Saves a record.
///
/// KEYS: record. ARGV: status, JSON record, TTL (ms), error code, claim token ('' for none),
/// whether the record has an owner ('1'/'0'), the owner, the channel to publish the record on
/// (for progress watchers on every instance).
///
/// Refuses (answers 0) a save of another claim than the record's (a late write of an earlier
/// claim of the key), and one that would turn a terminal record back into a live one (a late
/// progress write must not undo the final status). A record that is gone (expired, or Redis
/// restarted) is written again.
/// Takes a paused resumable upload for a new claim: replaces the record's data and token only
/// if the token is still the one read (compare-and-set; the checks are made by the caller on
/// the record it read). ARGV: the token read ('' for none), the new record, the new token,
/// the TTL in milliseconds.
const RESUME: &str = r"
local token = redis.call('HGET', KEYS[1], 'token') or ''
if token ~= ARGV[1] or redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'info', ARGV[2], 'token', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
";

const SAVE: &str = r"
local function terminal(s) return s == 2 or (s >= 4 and s <= 8) end
local current = redis.call('HGET', KEYS[1], 'status')
if current then
  local token = redis.call('HGET', KEYS[1], 'token')
  if ARGV[5] ~= '' and token and token ~= ARGV[5] then return 0 end
  if terminal(tonumber(current)) and not terminal(tonumber(ARGV[1])) then return 0 end
end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'info', ARGV[2], 'error', ARGV[4])
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'token', ARGV[5]) end
if ARGV[6] == '1' then redis.call('HSET', KEYS[1], 'owner', ARGV[7]) end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[8], ARGV[2])
return 1
";

/// Removes a record and its cancel flag, unless the record belongs to another claim.
///
/// KEYS: record, cancel flag. ARGV: claim token ('' for any).
const REMOVE: &str = r"
local token = redis.call('HGET', KEYS[1], 'token')
if ARGV[1] ~= '' and token and token ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
";

/// Records a `fileSize` answer, bound to an owner.
///
/// KEYS: the answer's hash. ARGV: size, TTL (ms), whether it has an owner ('1'/'0'), owner.
const PUT_SIZE: &str = r"
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'size', ARGV[1])
if ARGV[3] == '1' then redis.call('HSET', KEYS[1], 'owner', ARGV[4]) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
";

/// Takes a `fileSize` answer: for anyone (ARGV[1] = '0'), or only for exactly the owner it
/// was recorded for (ARGV[1] = '1'; ARGV[2] whether the taker has an owner, ARGV[3] the
/// owner). Anyone else gets nothing and leaves it in place.
const TAKE_SIZE: &str = r"
local size = redis.call('HGET', KEYS[1], 'size')
if not size then return false end
if ARGV[1] == '1' then
  local owner = redis.call('HGET', KEYS[1], 'owner')
  local mine = false
  if ARGV[2] == '1' then mine = ARGV[3] end
  if owner ~= mine then return false end
end
redis.call('DEL', KEYS[1])
return size
";

/// A [`ProgressStore`] over Redis, so that a status query or a cancel can land on another
/// server instance than the upload (igUpload needed a hand-written
/// `CustomDictionaryProvider` for that).
///
/// - **Records** are hashes `{prefix}rec:{key}` holding the status and the JSON record.
///   Claims and saves are Lua scripts, so a key in flight on one instance is refused (409) on
///   every other, a late progress write never undoes a final status, and a write of an
///   earlier claim of a key (carrying another [`ClaimToken`]) never touches a newer one.
///   The record keeps its owner: a claim by another owner is refused
///   ([`ClaimError::Foreign`]).
/// - **`fileSize` answers** are hashes `{prefix}fsize:{key}` with the size and the owner it
///   is bound to.
/// - **Expiry** is Redis' own: terminal records live for the
///   [retention](RedisStoreBuilder::retention); live ones for a
///   [lease](RedisStoreBuilder::lease) that every progress write renews, so a record left by
///   a crashed instance does not block its key for ever.
/// - **Progress** is published by the streaming instance at most every
///   [progress interval](RedisStoreBuilder::progress_interval), so a fast upload does not
///   flood Redis; other instances see it that fresh.
/// - **Progress pushed across instances**: every accepted save is also published on the
///   channel `{prefix}saved` (the JSON record), and each store subscribes to it with a
///   connection of its own, so that progress watchers (`command=watch` of the status
///   service) on any instance follow an upload streaming on another. An update reaches them
///   at most one [progress interval](RedisStoreBuilder::progress_interval) after the bytes
///   arrived (a status change at once), plus one round trip. Pub/sub may lose messages
///   while the subscription reconnects; watchers reload records every few seconds.
/// - **Cancel across instances**: `command=cancel` on instance B sets `{prefix}cancel:{key}`;
///   instance A, which streams the upload, polls the flags of its own uploads every
///   [cancel poll interval](RedisStoreBuilder::cancel_poll_interval) (one `MGET`, only while
///   it streams). The upload stops within that interval plus one round trip (default
///   250 ms).
/// - **Redis unavailable**: every operation has a [timeout](RedisStoreBuilder::op_timeout);
///   uploads go on and are kept (the registry keeps its own record), status queries for them
///   on other instances answer 503 until Redis is back; the connection is re-established
///   automatically.
///
/// # Example
///
/// ```no_run
/// use tower_upload_state::{RedisStore, UploadRegistry};
///
/// # async fn run() -> Result<(), tower_upload_state::StoreError> {
/// let store = RedisStore::builder("redis://127.0.0.1:6379/")
///     .prefix("my-app:uploads:")
///     .connect()
///     .await?;
/// let registry = UploadRegistry::with_store(store);
/// # let _ = registry;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    connection: ConnectionManager,
    /// For the subscription to published saves.
    client: redis::Client,
    settings: Settings,
    claim: Script,
    save: Script,
    resume: Script,
    remove: Script,
    put_size: Script,
    take_size: Script,
    /// Keys claimed by this instance and not ended yet, with their claim's token: whose
    /// cancel flags to watch.
    local: Mutex<HashMap<UploadKey, Option<ClaimToken>>>,
    on_cancel: OnceLock<CancelCallback>,
    on_save: OnceLock<SaveCallback>,
}

#[derive(Clone, Debug)]
struct Settings {
    prefix: String,
    retention: Duration,
    lease: Duration,
    progress_interval: Duration,
    cancel_poll_interval: Duration,
    op_timeout: Duration,
}

/// Configures and connects a [`RedisStore`].
#[derive(Debug)]
#[must_use]
pub struct RedisStoreBuilder {
    url: String,
    settings: Settings,
}

impl RedisStore {
    /// Starts configuring a store for the Redis server at `url` (`redis://host:port/db`).
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.into(),
            settings: Settings {
                prefix: "tower-upload:".to_owned(),
                retention: DEFAULT_RETENTION,
                lease: Duration::from_secs(120),
                progress_interval: Duration::from_millis(500),
                cancel_poll_interval: Duration::from_millis(250),
                op_timeout: Duration::from_millis(500),
            },
        }
    }

    /// Connects with the defaults: prefix `tower-upload:`, 10 minutes of retention.
    ///
    /// # Errors
    ///
    /// The URL is invalid or Redis cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::builder(url).connect().await
    }
}

impl RedisStoreBuilder {
    /// The prefix of every Redis key this store uses (default `tower-upload:`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.prefix = prefix.into();
        self
    }

    /// How long terminal records stay queryable (default 10 minutes).
    pub fn retention(mut self, retention: Duration) -> Self {
        self.settings.retention = retention;
        self
    }

    /// How long a live record survives without a write (default 2 minutes); keep it above
    /// the upload layer's idle timeout.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.settings.lease = lease;
        self
    }

    /// The most often an upload publishes its progress (default 500 ms).
    pub fn progress_interval(mut self, interval: Duration) -> Self {
        self.settings.progress_interval = interval;
        self
    }

    /// How often this instance checks for cancels requested elsewhere (default 250 ms).
    pub fn cancel_poll_interval(mut self, interval: Duration) -> Self {
        self.settings.cancel_poll_interval = interval;
        self
    }

    /// How long one Redis operation may take before it counts as failed (default 500 ms).
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.settings.op_timeout = timeout;
        self
    }

    /// Connects, and starts the task that watches for remote cancels (it ends with the
    /// store). Needs a tokio runtime.
    ///
    /// # Errors
    ///
    /// The URL is invalid or Redis cannot be reached.
    pub async fn connect(self) -> Result<RedisStore, StoreError> {
        let client = redis::Client::open(self.url.as_str()).map_err(StoreError::new)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.settings.op_timeout))
            .set_response_timeout(Some(self.settings.op_timeout))
            .set_max_delay(Duration::from_secs(2));
        let connection = timeout(
            self.settings.op_timeout * 4,
            ConnectionManager::new_with_config(client.clone(), config),
        )
        .await?;
        let inner = Arc::new(Inner {
            connection,
            settings: self.settings,
            claim: Script::new(CLAIM),
            save: Script::new(SAVE),
            resume: Script::new(RESUME),
            remove: Script::new(REMOVE),
            put_size: Script::new(PUT_SIZE),
            take_size: Script::new(TAKE_SIZE),
            local: Mutex::default(),
            on_cancel: OnceLock::new(),
            on_save: OnceLock::new(),
            client,
        });
        tokio::spawn(watch_cancels(Arc::downgrade(&inner)));
        Ok(RedisStore { inner })
    }
}

async fn timeout<T, E>(
    limit: Duration,
    operation: impl Future<Output = Result<T, E>>,
) -> Result<T, StoreError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match tokio::time::timeout(limit, operation).await {
        Ok(result) => result.map_err(StoreError::new),
        Err(_) => Err(StoreError::new(format!(
            "redis did not answer within {limit:?}"
        ))),
    }
}

/// Delivers the saves published by every instance to this instance's progress watchers
/// (`on_save`), from the moment the registry asks for them until the store is dropped. The
/// subscription is re-established after an error, every second at most.
async fn watch_saves(inner: Weak<Inner>) {
    use futures_util::StreamExt as _;
    loop {
        let (client, channel) = {
            let Some(store) = inner.upgrade() else { return };
            (store.client.clone(), store.saved_channel())
        };
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub.into_on_message())
        };
        if let Ok(Ok(mut messages)) = tokio::time::timeout(Duration::from_secs(5), subscribed).await
        {
            loop {
                // Wake now and then to notice that the store was dropped.
                let message =
                    match tokio::time::timeout(Duration::from_secs(1), messages.next()).await {
                        Ok(Some(message)) => message,
                        Ok(None) => break,
                        Err(_) => {
                            if inner.strong_count() == 0 {
                                return;
                            }
                            continue;
                        }
                    };
                let Some(store) = inner.upgrade() else { return };
                let Some(on_save) = store.on_save.get() else {
                    continue;
                };
                let record = message
                    .get_payload::<String>()
                    .ok()
                    .and_then(|json| decode(&json).ok());
                if let Some(record) = record {
                    on_save(&record);
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Polls the cancel flags of this instance's live uploads until the store is dropped.
async fn watch_cancels(inner: Weak<Inner>) {
    loop {
        let Some(store) = inner.upgrade() else { return };
        let interval = store.settings.cancel_poll_interval;
        let keys: Vec<UploadKey> = store.local().keys().cloned().collect();
        if !keys.is_empty() {
            if let Some(on_cancel) = store.on_cancel.get() {
                let flags: Vec<String> = keys.iter().map(|key| store.cancel_key(key)).collect();
                let mut connection = store.connection.clone();
                let found = timeout(store.settings.op_timeout, async {
                    connection.mget::<_, Vec<Option<String>>>(&flags).await
                })
                .await;
                // A failed poll is retried at the next tick.
                if let Ok(found) = found {
                    for (key, flag) in keys.iter().zip(found) {
                        if flag.is_some() {
                            on_cancel(key);
                        }
                    }
                }
            }
        }
        drop(store);
        tokio::time::sleep(interval).await;
    }
}

impl Inner {
    fn record_key(&self, key: &UploadKey) -> String {
        format!("{}rec:{key}", self.settings.prefix)
    }

    fn saved_channel(&self) -> String {
        format!("{}saved", self.settings.prefix)
    }

    fn cancel_key(&self, key: &UploadKey) -> String {
        format!("{}cancel:{key}", self.settings.prefix)
    }

    fn size_key(&self, key: &UploadKey) -> String {
        // Not `size:`, which earlier versions used for plain strings.
        format!("{}fsize:{key}", self.settings.prefix)
    }

    fn local(&self) -> std::sync::MutexGuard<'_, HashMap<UploadKey, Option<ClaimToken>>> {
        lock(&self.local)
    }

    /// Stops watching `key`'s cancel flag, unless it was claimed again here since.
    fn unwatch(&self, key: &UploadKey, token: Option<ClaimToken>) {
        let mut local = self.local();
        if token.is_none() || local.get(key).is_some_and(|watched| *watched == token) {
            local.remove(key);
        }
    }

    async fn claim(&self, info: &UploadInfo, claim: Option<Claim>) -> Result<(), ClaimError> {
        let json = encode(info)?;
        let mut connection = self.connection.clone();
        let mut invocation = self.claim.prepare_invoke();
        let (token, bound) = claim.map_or((None, false), |claim| {
            (Some(claim.token), claim.owner_bound)
        });
        invocation
            .key(self.record_key(&info.key))
            .key(self.cancel_key(&info.key))
            .arg(info.status.code())
            .arg(json)
            .arg(self.ttl_ms(info))
            .arg(info.error.code())
            .arg(token.map(|token| token.to_string()).unwrap_or_default())
            .arg(flag(info.owner.is_some()))
            .arg(info.owner.as_deref().unwrap_or(""))
            .arg(flag(bound));
        let answer: Vec<String> = timeout(
            self.settings.op_timeout,
            invocation.invoke_async(&mut connection),
        )
        .await?;
        match answer.first().map(String::as_str) {
            Some("ok") => {
                self.local().insert(info.key.clone(), token);
                Ok(())
            }
            Some("foreign") => Err(ClaimError::Foreign),
            Some("in_flight") => Err(ClaimError::InFlight),
            Some("rejected") => {
                let previous = answer
                    .get(1)
                    .ok_or_else(|| StoreError::new("rejected record without data"))?;
                Err(ClaimError::Rejected(Box::new(decode(previous)?)))
            }
            other => Err(StoreError::new(format!("unexpected claim answer {other:?}")).into()),
        }
    }

    async fn save(&self, info: &UploadInfo, token: Option<ClaimToken>) -> Result<(), StoreError> {
        if info.status.is_terminal() {
            self.unwatch(&info.key, token);
        }
        let json = encode(info)?;
        let mut connection = self.connection.clone();
        let mut invocation = self.save.prepare_invoke();
        invocation
            .key(self.record_key(&info.key))
            .arg(info.status.code())
            .arg(json)
            .arg(self.ttl_ms(info))
            .arg(info.error.code())
            .arg(token.map(|token| token.to_string()).unwrap_or_default())
            .arg(flag(info.owner.is_some()))
            .arg(info.owner.as_deref().unwrap_or(""))
            .arg(self.saved_channel());
        // 0 when refused: a stale write is not the caller's error.
        let _: i64 = timeout(
            self.settings.op_timeout,
            invocation.invoke_async(&mut connection),
        )
        .await?;
        Ok(())
    }

    async fn resume(
        &self,
        key: &UploadKey,
        claim: Claim,
        owner: Option<&str>,
        now: std::time::SystemTime,
        lease_until: std::time::SystemTime,
    ) -> Result<UploadInfo, ClaimError> {
        let mut connection = self.connection.clone();
        let record = self.record_key(key);
        let (json, token): (Option<String>, Option<String>) =
            timeout(self.settings.op_timeout, async {
                redis::cmd("HMGET")
                    .arg(&record)
                    .arg("info")
                    .arg("token")
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        let mut info = decode(&json.ok_or(ClaimError::NotResumable)?)?;
        if info.is_foreign_to(owner, claim.owner_bound) {
            return Err(ClaimError::Foreign);
        }
        if !info.status.is_in_flight() {
            return Err(ClaimError::NotResumable);
        }
        let resumable = info.resumable.as_mut().ok_or(ClaimError::NotResumable)?;
        let lapsed = resumable.lease_until.is_some_and(|until| until < now);
        if !resumable.paused && !lapsed {
            return Err(ClaimError::InFlight);
        }
        resumable.paused = false;
        resumable.lease_until = Some(lease_until);
        let mut invocation = self.resume.prepare_invoke();
        invocation
            .key(&record)
            .arg(token.unwrap_or_default())
            .arg(encode(&info)?)
            .arg(claim.token.to_string())
            .arg(self.ttl_ms(&info));
        let swapped: i64 = timeout(
            self.settings.op_timeout,
            invocation.invoke_async(&mut connection),
        )
        .await?;
        if swapped == 0 {
            // Another request took it between the read and the write.
            return Err(ClaimError::InFlight);
        }
        self.local().insert(key.clone(), Some(claim.token));
        Ok(info)
    }

    async fn remove(&self, key: &UploadKey, token: Option<ClaimToken>) -> Result<(), StoreError> {
        self.unwatch(key, token);
        let mut connection = self.connection.clone();
        let mut invocation = self.remove.prepare_invoke();
        invocation
            .key(self.record_key(key))
            .key(self.cancel_key(key))
            .arg(token.map(|token| token.to_string()).unwrap_or_default());
        let _: i64 = timeout(
            self.settings.op_timeout,
            invocation.invoke_async(&mut connection),
        )
        .await?;
        Ok(())
    }

    async fn put_file_size(
        &self,
        key: &UploadKey,
        size: u64,
        owner: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        let mut invocation = self.put_size.prepare_invoke();
        invocation
            .key(self.size_key(key))
            .arg(size)
            .arg((self.settings.retention.as_millis() as u64).max(1))
            .arg(flag(owner.is_some()))
            .arg(owner.unwrap_or(""));
        let _: i64 = timeout(
            self.settings.op_timeout,
            invocation.invoke_async(&mut connection),
        )
        .await?;
        Ok(())
    }

    /// `owner`: `None` to take it for anyone, `Some(owner)` only for exactly that owner.
    async fn take_file_size(
        &self,
        key: &UploadKey,
        owner: Option<Option<&str>>,
    ) -> Result<Option<u64>, StoreError> {
        let mut connection = self.connection.clone();
        let mut invocation = self.take_size.prepare_invoke();
        invocation
            .key(self.size_key(key))
            .arg(flag(owner.is_some()))
            .arg(flag(owner.flatten().is_some()))
            .arg(owner.flatten().unwrap_or(""));
        timeout(
            self.settings.op_timeout,
            invocation.invoke_async::<Option<u64>>(&mut connection),
        )
        .await
    }

    fn ttl_ms(&self, info: &UploadInfo) -> u64 {
        let ttl = if info.status.is_terminal() {
            self.settings.retention
        } else if let Some(expires_at) = info
            .resumable
            .as_ref()
            .filter(|resumable| resumable.paused)
            .and_then(|resumable| resumable.expires_at)
        {
            // A paused resumable upload waits for its next request until it expires.
            let left = expires_at
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default();
            left.max(self.settings.lease)
        } else {
            self.settings.lease
        };
        (ttl.as_millis() as u64).max(1)
    }
}

/// A Lua script's boolean argument.
fn flag(on: bool) -> &'static str {
    if on {
        "1"
    } else {
        "0"
    }
}

fn encode(info: &UploadInfo) -> Result<String, StoreError> {
    serde_json::to_string(info).map_err(StoreError::new)
}

fn decode(json: &str) -> Result<UploadInfo, StoreError> {
    serde_json::from_str(json).map_err(StoreError::new)
}

impl ProgressStore for RedisStore {
    fn claim<'a>(&'a self, info: &'a UploadInfo) -> StoreFuture<'a, Result<(), ClaimError>> {
        Box::pin(self.inner.claim(info, None))
    }

    fn claim_with<'a>(
        &'a self,
        info: &'a UploadInfo,
        claim: Claim,
    ) -> StoreFuture<'a, Result<(), ClaimError>> {
        Box::pin(self.inner.claim(info, Some(claim)))
    }

    fn save<'a>(&'a self, info: &'a UploadInfo) -> StoreFuture<'a, Result<(), StoreError>> {
        Box::pin(self.inner.save(info, None))
    }

    fn save_with<'a>(
        &'a self,
        info: &'a UploadInfo,
        token: ClaimToken,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        Box::pin(self.inner.save(info, Some(token)))
    }

    fn resume_with<'a>(
        &'a self,
        key: &'a UploadKey,
        claim: Claim,
        owner: Option<&'a str>,
        now: std::time::SystemTime,
        lease_until: std::time::SystemTime,
    ) -> StoreFuture<'a, Result<UploadInfo, ClaimError>> {
        Box::pin(self.inner.resume(key, claim, owner, now, lease_until))
    }

    fn remove<'a>(&'a self, key: &'a UploadKey) -> StoreFuture<'a, Result<(), StoreError>> {
        Box::pin(self.inner.remove(key, None))
    }

    fn remove_with<'a>(
        &'a self,
        key: &'a UploadKey,
        token: ClaimToken,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        Box::pin(self.inner.remove(key, Some(token)))
    }

    fn load<'a>(
        &'a self,
        key: &'a UploadKey,
    ) -> StoreFuture<'a, Result<Option<UploadInfo>, StoreError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let mut connection = inner.connection.clone();
            let json: Option<String> = timeout(inner.settings.op_timeout, async {
                connection.hget(inner.record_key(key), "info").await
            })
            .await?;
            json.as_deref().map(decode).transpose()
        })
    }

    fn put_file_size<'a>(
        &'a self,
        key: &'a UploadKey,
        size: u64,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        Box::pin(self.inner.put_file_size(key, size, None))
    }

    fn take_file_size<'a>(
        &'a self,
        key: &'a UploadKey,
    ) -> StoreFuture<'a, Result<Option<u64>, StoreError>> {
        Box::pin(self.inner.take_file_size(key, None))
    }

    fn put_file_size_for<'a>(
        &'a self,
        key: &'a UploadKey,
        size: u64,
        owner: Option<&'a str>,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        Box::pin(self.inner.put_file_size(key, size, owner))
    }

    fn take_file_size_for<'a>(
        &'a self,
        key: &'a UploadKey,
        owner: Option<&'a str>,
    ) -> StoreFuture<'a, Result<Option<u64>, StoreError>> {
        Box::pin(self.inner.take_file_size(key, Some(owner)))
    }

    fn request_cancel<'a>(&'a self, key: &'a UploadKey) -> StoreFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let mut connection = inner.connection.clone();
            let ttl = inner.settings.lease.as_millis() as u64;
            timeout(inner.settings.op_timeout, async {
                connection
                    .pset_ex::<_, _, ()>(inner.cancel_key(key), 1, ttl.max(1))
                    .await
            })
            .await
        })
    }

    fn retention(&self) -> Duration {
        self.inner.settings.retention
    }

    fn progress_interval(&self) -> Option<Duration> {
        Some(self.inner.settings.progress_interval)
    }

    fn watch_cancels(&self, on_cancel: CancelCallback) {
        let _ = self.inner.on_cancel.set(on_cancel);
    }

    /// Subscribes to the saves of every instance (see the type's docs); needs a tokio
    /// runtime (without one, watchers here see other instances' uploads only through their
    /// periodic reloads).
    fn watch_saves(&self, on_save: SaveCallback) {
        if self.inner.on_save.set(on_save).is_ok() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(watch_saves(Arc::downgrade(&self.inner)));
            }
        }
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("settings", &self.inner.settings)
            .field("local_uploads", &self.inner.local().len())
            .finish_non_exhaustive()
    }
}
