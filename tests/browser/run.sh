#!/usr/bin/env bash
# Browser tests: the real Ignite UI igUpload widget, the demo's own page, a plain HTML form
# (JavaScript off) and Uppy, in headless Debian Chromium driven by playwright-core, against the
# demo server (examples/demo.rs).
#
#   bash tests/browser/run.sh
#
# Idempotent: installs only what is missing (Debian `chromium` with apt; the npm packages
# pinned in package-lock.json through scripts/install-widget; never a Playwright browser
# download), builds the demo, starts it on a free loopback port with a fresh upload folder
# and a 1 MiB file limit, runs the tests with node's test runner and stops the server.
# For the live-progress test across instances (sse.test.mjs) it also starts a redis-server
# (Debian `redis-server`, installed with apt if missing) and two more demo instances that
# share it (`--redis`; the demo is built with `--features redis`).
# Screenshots and the server's log land in tests/browser/screenshots/ (git-ignored).
# CHROMIUM=/path/to/chrome overrides the browser.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
artifacts="$here/screenshots"
max_file_size=1048576 # 1 MiB: the oversize scenarios go over it

say() { printf '==> %s\n' "$*"; }

# 1. The browser: Debian's chromium.
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x $CHROMIUM ]]; then
  if [[ $CHROMIUM != /usr/bin/chromium ]]; then
    echo "run.sh: CHROMIUM=$CHROMIUM is not an executable" >&2
    exit 1
  fi
  say "installing chromium with apt"
  sudo=()
  if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq chromium >/dev/null
fi
if ! command -v redis-server >/dev/null 2>&1; then
  say "installing redis-server with apt"
  sudo=()
  if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq redis-server >/dev/null
fi

# 2. Node packages: playwright-core, the widget (ignite-ui, jquery, jquery-ui) and uppy.
if ! command -v node >/dev/null 2>&1; then
  echo "run.sh: node not found; install Node.js 20 or later with npm (Debian: apt-get install nodejs npm)" >&2
  exit 1
fi
for package in playwright-core ignite-ui jquery jquery-ui uppy; do
  if [[ ! -f $here/node_modules/$package/package.json ]]; then
    say "installing the npm packages"
    "$root/scripts/install-widget"
    break
  fi
done

# 3. The demo (a debug build: it shares its dependencies with `cargo test`).
say "building the demo"
(cd "$root" && cargo build --quiet --example demo --features redis)
target_dir="$(cd "$root" && cargo metadata --format-version 1 --no-deps |
  node -e 'let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => console.log(JSON.parse(s).target_directory))')"
demo="$target_dir/debug/examples/demo"

# 4. Start it: port 0 lets the kernel pick a free port; the demo prints its URL.
work="$(mktemp -d "${TMPDIR:-/tmp}/tower-upload-browser.XXXXXX")"
rm -rf "$artifacts"
mkdir -p "$artifacts"
server_pid=""
extra_pids=() # redis-server and the two demo instances that share it
stop() {
  local pid=$1
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
}
cleanup() {
  local status=$?
  stop "$server_pid"
  for pid in "${extra_pids[@]}"; do stop "$pid"; done
  cp "$work/demo.log" "$artifacts/demo-server.log" 2>/dev/null || true
  cp "$work/demo-a.log" "$artifacts/demo-redis-a.log" 2>/dev/null || true
  cp "$work/demo-b.log" "$artifacts/demo-redis-b.log" 2>/dev/null || true
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$demo" --addr 127.0.0.1:0 --upload-dir "$work/uploads" --max-file-size "$max_file_size" \
  >"$work/demo.log" 2>&1 &
server_pid=$!

url=""
for _ in $(seq 300); do
  url="$(grep -o -m1 'http://127\.0\.0\.1:[0-9]*' "$work/demo.log" || true)"
  [[ -n $url ]] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then
    cat "$work/demo.log" >&2
    echo "run.sh: the demo exited before it listened" >&2
    exit 1
  fi
  sleep 0.1
done
if [[ -z $url ]]; then
  echo "run.sh: the demo did not print its address within 30 s" >&2
  exit 1
fi
node -e '
  const url = process.argv[1];
  const deadline = Date.now() + 10000;
  (async () => {
    for (;;) {
      try { if ((await fetch(url)).ok) return; } catch {}
      if (Date.now() > deadline) { console.error(`run.sh: ${url} does not answer`); process.exit(1); }
      await new Promise((r) => setTimeout(r, 100));
    }
  })();' "$url/"
say "demo on $url (pid $server_pid), uploads in $work/uploads"

# 4b. Two more instances sharing one Redis (for sse.test.mjs): an upload on A, watched on B.
free_port() { node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })'; }
redis_port="$(free_port)"
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >"$work/redis.log" 2>&1 &
extra_pids+=($!)
for _ in $(seq 100); do
  node -e 'require("net").connect(process.argv[1], "127.0.0.1").on("connect", () => process.exit(0)).on("error", () => process.exit(1))' "$redis_port" && break
  sleep 0.1
done
start_instance() { # name -> sets instance_url (not in a subshell: the pid must be kept)
  "$demo" --addr 127.0.0.1:0 --upload-dir "$work/uploads-$1" --max-file-size "$max_file_size" \
    --redis "redis://127.0.0.1:$redis_port/" >"$work/demo-$1.log" 2>&1 &
  extra_pids+=($!)
  local found=""
  instance_url=""
  for _ in $(seq 300); do
    found="$(grep -o -m1 'http://127\.0\.0\.1:[0-9]*' "$work/demo-$1.log" || true)"
    [[ -n $found ]] && break
    sleep 0.1
  done
  if [[ -z $found ]]; then
    cat "$work/demo-$1.log" >&2
    echo "run.sh: the Redis demo instance $1 did not start" >&2
    exit 1
  fi
  instance_url="$found"
}
start_instance a
url_a="$instance_url"
start_instance b
url_b="$instance_url"
say "Redis pair: $url_a and $url_b over redis-server on port $redis_port"

# 5. The tests, one file after the other (they check the shared upload folder).
say "running the browser tests"
DEMO_URL="$url" DEMO_UPLOAD_DIR="$work/uploads" DEMO_MAX_FILE_SIZE="$max_file_size" \
  DEMO_REDIS_URL_A="$url_a" DEMO_REDIS_URL_B="$url_b" \
  node --test --test-reporter=spec --test-concurrency=1 \
  "$here/igupload.test.mjs" "$here/demo-page.test.mjs" "$here/form.test.mjs" \
  "$here/uppy.test.mjs" "$here/metrics.test.mjs" "$here/sse.test.mjs"
