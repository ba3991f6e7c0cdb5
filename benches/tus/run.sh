#!/usr/bin/env bash
# tus PATCH throughput: this layer (the demo, release build) against @tus/server 2 with its
# file store, in the same run, and against our own multipart path. One upload at a time over
# loopback, the whole file in one PATCH (one POST for multipart), N repetitions, medians.
#
#   benches/tus/run.sh [SIZE_MIB=1024] [REPS=3]
#
# Prints MB/s and the server's CPU seconds per GiB (user+system, from /proc) for each.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
size_mib=${1:-1024}
reps=${2:-3}

[[ -d "$here/node_modules/@tus/server" ]] || npm ci --prefix "$here" --no-audit --no-fund
cargo build --release --manifest-path "$root/Cargo.toml" --example demo
target_dir="$(cargo metadata --manifest-path "$root/Cargo.toml" --format-version 1 --no-deps |
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
tick=$(getconf CLK_TCK)

head -c "$((size_mib * 1024 * 1024))" /dev/urandom >"$work/data.bin"
bytes=$(stat -c %s "$work/data.bin")

ours_port=$(free_port)
"$target_dir/release/examples/demo" --addr "127.0.0.1:$ours_port" --upload-dir "$work/ours" \
  --max-file-size none >"$work/ours.log" 2>&1 &
pids+=($!)
ours_pid=$!
peer_port=$(free_port)
node "$here/peer.mjs" "$peer_port" "$work/peer" >"$work/peer.log" 2>&1 &
pids+=($!)
peer_pid=$!
mkdir -p "$work/peer"
for port in "$ours_port" "$peer_port"; do
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
done

# measure NAME PID COMMAND...: runs COMMAND, prints "seconds cpu_seconds".
measure() {
  local pid=$1
  shift
  local c0 c1 t0 t1
  c0=$(cpu_ticks "$pid")
  t0=$(date +%s.%N)
  "$@" >/dev/null
  t1=$(date +%s.%N)
  c1=$(cpu_ticks "$pid")
  echo "$(echo "$t1 - $t0" | bc -l) $(echo "($c1 - $c0) / $tick" | bc -l)"
}

tus_patch() { # PORT
  local location
  location=$(curl -sS -D - -o /dev/null -X POST "http://127.0.0.1:$1/files/" -H 'Tus-Resumable: 1.0.0' \
    -H "Upload-Length: $bytes" | tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
  [[ $location == http* ]] || location="http://127.0.0.1:$1$location"
  curl -sS -f -X PATCH -T "$work/data.bin" "$location" -H 'Tus-Resumable: 1.0.0' -H 'Upload-Offset: 0' \
    -H 'Content-Type: application/offset+octet-stream' -H 'Expect:'
}

multipart() { # PORT KEY
  curl -sS -f -F "file=@$work/data.bin;filename=mp-$2.bin" "http://127.0.0.1:$1/upload?key=$2" -H 'Expect:'
}

report() { # NAME RESULTS...
  local name=$1
  shift
  printf '%s\n' "$@" | sort -n | awk -v n="$name" -v b="$bytes" '
    { s[NR]=$1; c[NR]=$2 }
    END { m=int((NR+1)/2); printf "%-28s %8.0f MB/s  %6.2f CPU s/GiB  (runs: %d)\n", n, b/s[m]/1e6, c[m]/(b/1073741824), NR }'
}

ours=() peer=() mp=()
for rep in $(seq "$reps"); do
  ours+=("$(measure "$ours_pid" tus_patch "$ours_port")")
  peer+=("$(measure "$peer_pid" tus_patch "$peer_port")")
  mp+=("$(measure "$ours_pid" multipart "$ours_port" "bench$rep")")
  find "$work/ours" "$work/peer" -type f -delete
done
echo "tus PATCH, one ${size_mib} MiB upload at a time, loopback, medians of $reps:"
report "tower-upload tus PATCH" "${ours[@]}"
report "@tus/server + file-store" "${peer[@]}"
report "tower-upload multipart" "${mp[@]}"
