#!/usr/bin/env bash
# Soak: a steady mixed load of /query, WebSocket chat and uploads at about
# half the measured capacity, with the server's resident memory sampled every
# 10 seconds. Prints numbers; it is not a test and asserts no timings.
#
#   scripts/soak.sh [DURATION_SECS (default 600)] [CORPUS_DIR (default ../shared/eval/scifact-train)]
#
# 1. Ingests the corpus into a scratch data directory (reused across runs) as
#    the public collection `scifact`, creates an admin, starts the release
#    server (rate limits off, extractive chat unless CHAT_BACKEND is set).
# 2. Capacity: 20 s of the same mix as fast as it goes (6 query clients, 1
#    chat client, 1 upload client), giving each kind's rate.
# 3. Soak: each kind paced at half its measured rate for DURATION_SECS.
#    Uploads cycle through 40 source names with changing content, so the
#    update and delete paths run too, not only inserts.
# 4. Reports requests and errors per kind, latency p50/p99, the RSS series
#    (anonymous, file-backed, and the Rust heap: live and allocator-resident),
#    the mean RSS of the first and the last minute, then stops the server
#    and runs `ragchat check` on the data directory.
# Exit status is non-zero on any error or an inconsistent check.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
duration="${1:-600}"
corpus_dir="${2:-../shared/eval/scifact-train}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ragchat-target}"
export RAGCHAT_MODELS_DIR="${RAGCHAT_MODELS_DIR:-$PWD/models}"
export RAGCHAT_DATA_DIR="${SOAK_DATA_DIR:-/tmp/ragchat-soak}"
export RAGCHAT_AUTH_JWT_SECRET="${RAGCHAT_AUTH_JWT_SECRET:-$(python3 -c 'import secrets; print(secrets.token_hex(32))')}"
export RAGCHAT_RATE_LIMIT_ENABLED=false RAGCHAT_LOG_LEVEL="${RAGCHAT_LOG_LEVEL:-warn}"
export RAGCHAT_CHAT_BACKEND="${CHAT_BACKEND:-extractive}"

[ -n "${SOAK_SKIP_BUILD:-}" ] || cargo build --release --locked --bin ragchat
bin="$CARGO_TARGET_DIR/release/ragchat"
"$bin" ingest "$corpus_dir/corpus.jsonl" --collection scifact --public >/dev/null
password=soak-test-password
"$bin" user create soakadmin --admin --password "$password" >/dev/null 2>&1 || true

log=$(mktemp)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$log"' EXIT
"$bin" serve --bind 127.0.0.1:0 > "$log" 2>&1 &
pid=$!
addr=""
for _ in $(seq 1 600); do
  addr=$(sed -n 's/^ragchat listening on //p' "$log")
  [ -n "$addr" ] && curl -sf "$addr/ready" >/dev/null && break
  sleep 0.1
done
[ -n "$addr" ] || { echo "server did not start" >&2; cat "$log" >&2; exit 1; }

rc=0
python3 - "$addr" "$pid" "$duration" "$corpus_dir" "$password" <<'PY' || rc=$?
import base64, json, os, random, socket, statistics, sys, threading, time
import urllib.error, urllib.parse, urllib.request, uuid

addr, pid, duration, corpus_dir, password = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
host, port = urllib.parse.urlsplit(addr).hostname, urllib.parse.urlsplit(addr).port

queries = [json.loads(l)["text"] for l in open(os.path.join(corpus_dir, "queries.jsonl")) if l.strip()]
docs = []
for line in open(os.path.join(corpus_dir, "corpus.jsonl")):
    if line.strip():
        d = json.loads(line)
        docs.append((d.get("title") or "") + "\n\n" + d["text"])
        if len(docs) >= 400:
            break

def call(method, path, token=None, body=None, headers=None, raw=None):
    h = dict(headers or {})
    if token:
        h["authorization"] = "Bearer " + token
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        h["content-type"] = "application/json"
    req = urllib.request.Request(addr + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.read()[:300]

class Auth:
    """Logs in again before the access token can expire."""
    def __init__(self):
        self.lock = threading.Lock()
        self.token, self.at = None, 0
    def get(self):
        with self.lock:
            if time.time() - self.at > 300:
                st, body = call("POST", "/api/v1/auth/login", body={"username": "soakadmin", "password": password})
                if st != 200:
                    raise SystemExit(f"login failed: {st} {body}")
                self.token, self.at = body["access_token"], time.time()
            return self.token
auth = Auth()

st, body = call("GET", "/api/v1/collections", auth.get())
uploads_id = next((c["id"] for c in body["items"] if c["name"] == "soak-uploads"), None)
if uploads_id is None:
    st, body = call("POST", "/api/v1/collections", auth.get(), {"name": "soak-uploads"})
    uploads_id = body["id"]

# --- a minimal WebSocket client (RFC 6455), enough for the chat protocol ---
class WS:
    def __init__(self, path, token):
        self.s = socket.create_connection((host, port), timeout=120)
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                        f"Authorization: Bearer {token}\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.s.recv(4096)
            if not chunk:
                raise IOError("closed during handshake")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise IOError("upgrade refused: " + head.split(b"\r\n")[0].decode())
    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(65536)
            if not chunk:
                raise IOError("connection closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out
    def send(self, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
        else:
            head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
        self.s.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    def recv_text(self):
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(self._read(2), "big")
            elif n == 127:
                n = int.from_bytes(self._read(8), "big")
            payload = self._read(n)
            op = b0 & 0x0F
            if op == 0x9:
                self.send(0xA, payload)
            elif op == 0x8:
                raise IOError("closed by server: " + payload[2:].decode(errors="replace"))
            elif op == 0x1:
                return json.loads(payload)
    def close(self):
        try:
            self.send(0x8, (1000).to_bytes(2, "big"))
        finally:
            self.s.close()

# --- the three kinds of work -------------------------------------------------
counter = {"upload": 0}
counter_lock = threading.Lock()

def do_query():
    q = random.choice(queries)
    path = "/api/v1/query?" + urllib.parse.urlencode({"q": q, "top_k": 10, "collections": "scifact"})
    st, body = call("GET", path, auth.get())
    if st != 200:
        raise IOError(f"query {st}: {body}")

def do_chat():
    ws = WS("/api/v1/chat/ws", auth.get())
    try:
        ws.send(0x1, json.dumps({"type": "ask", "conversation_id": None,
                                 "message": random.choice(queries), "collections": ["scifact"]}).encode())
        while True:
            f = ws.recv_text()
            if f["type"] == "done":
                return
            if f["type"] == "error":
                raise IOError(f"chat error frame: {f}")
    finally:
        ws.close()

def do_upload():
    with counter_lock:
        i = counter["upload"]
        counter["upload"] += 1
    name = f"soak-{i % 40}.txt"
    text = docs[i % len(docs)]
    boundary = uuid.uuid4().hex
    raw = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
           f"Content-Type: text/plain\r\n\r\n{text}\r\n--{boundary}--\r\n").encode()
    st, body = call("POST", f"/api/v1/collections/{uploads_id}/documents", auth.get(), raw=raw,
                    headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    if st != 202:
        raise IOError(f"upload {st}: {body}")
    job = body["job"]["id"]
    deadline = time.time() + 120
    while time.time() < deadline:
        st, body = call("GET", f"/api/v1/jobs/{job}", auth.get())
        if st != 200:
            raise IOError(f"job {st}: {body}")
        if body["state"] == "succeeded":
            errs = (body.get("result") or {}).get("errors") or []
            if errs:
                raise IOError(f"upload job reported errors: {errs}")
            return
        if body["state"] in ("failed", "dead", "cancelled"):
            raise IOError(f"upload job {body['state']}: {body.get('last_error')}")
        time.sleep(0.2)
    raise IOError("upload job did not finish in 120 s")

WORK = {"query": do_query, "chat": do_chat, "upload": do_upload}

class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.lat = {k: [] for k in WORK}
        self.err = {k: 0 for k in WORK}
        self.first_err = {}
    def ok(self, kind, secs):
        with self.lock:
            self.lat[kind].append(secs)
    def fail(self, kind, e):
        with self.lock:
            self.err[kind] += 1
            self.first_err.setdefault(kind, repr(e)[:300])

def worker(kind, stats, stop, interval):
    """Closed loop when interval is None, otherwise one operation per interval
    (paced from a schedule, so a slow call does not lower the offered rate)."""
    next_at = time.time() + (random.random() * interval if interval else 0)
    while not stop.is_set():
        if interval:
            delay = next_at - time.time()
            if delay > 0 and stop.wait(delay):
                return
            next_at = max(next_at + interval, time.time() - interval)
        t0 = time.time()
        try:
            WORK[kind]()
            stats.ok(kind, time.time() - t0)
        except Exception as e:  # noqa: BLE001 - every failure counts as an error
            stats.fail(kind, e)

def run(plan, secs, sample=None):
    stats, stop, threads = Stats(), threading.Event(), []
    for kind, n, interval in plan:
        for _ in range(n):
            t = threading.Thread(target=worker, args=(kind, stats, stop, interval), daemon=True)
            t.start()
            threads.append(t)
    end = time.time() + secs
    while time.time() < end:
        time.sleep(min(10, max(0, end - time.time())))
        if sample:
            sample(stats)
    stop.set()
    for t in threads:
        t.join(timeout=150)
    return stats

def rss_mib():
    """Resident MiB: total, anonymous (heap: what a leak grows) and
    file-backed (mmapped index files, which the kernel can drop)."""
    found = {}
    for line in open(f"/proc/{pid}/status"):
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            found[key] = int(rest.split()[0]) / 1024
    nan = float("nan")
    return found.get("VmRSS", nan), found.get("RssAnon", nan), found.get("RssFile", nan)

def heap_mib():
    """The Rust heap from /metrics: live allocations, and what the allocator
    holds resident (live plus freed pages not yet returned)."""
    want = {"ragchat_heap_allocated_bytes": "allocated", "ragchat_heap_resident_bytes": "resident"}
    got = {}
    try:
        with urllib.request.urlopen(addr + "/metrics", timeout=10) as r:
            for line in r.read().decode().splitlines():
                name, _, value = line.partition(" ")
                if name in want:
                    got[want[name]] = float(value) / 2**20
    except Exception:
        pass
    nan = float("nan")
    return got.get("allocated", nan), got.get("resident", nan)

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1000 if xs else float("nan")

# Warm the model and the indexes before measuring.
do_query(); do_chat()
mix = [("query", 6, None), ("chat", 1, None), ("upload", 1, None)]
cap_secs = 20
cap = run(mix, cap_secs)
rates = {k: len(cap.lat[k]) / cap_secs for k in WORK}
print("capacity (20 s, closed loop): " + ", ".join(f"{k} {r:.1f}/s" for k, r in rates.items())
      + "; errors " + json.dumps(cap.err))
# Half of each measured rate, spread over a few paced clients per kind.
clients = {"query": 4, "chat": 1, "upload": 1}
plan = []
for kind, n in clients.items():
    target = max(rates[kind] / 2, 0.05)
    plan.append((kind, n, n / target))
print("soak: " + ", ".join(f"{k} {n / iv:.2f}/s" for k, n, iv in plan) + f" for {duration} s")

samples = []
t_start = time.time()
def sample(stats):
    t = time.time() - t_start
    r, anon, filed = rss_mib()
    live, held = heap_mib()
    samples.append((t, r, anon, filed, live, held))
    with stats.lock:
        done = {k: len(v) for k, v in stats.lat.items()}
        errs = sum(stats.err.values())
    print(f"t={t:5.0f}s rss={r:7.1f} MiB anon={anon:7.1f} file={filed:6.1f} heap={live:6.1f}/{held:6.1f} " + " ".join(f"{k}={n}" for k, n in done.items()) + f" errors={errs}", flush=True)
soak = run(plan, duration, sample)

print()
print(f"{'kind':<8}{'ok':>8}{'errors':>8}{'rate/s':>9}{'p50 ms':>9}{'p99 ms':>9}")
for k in WORK:
    xs = soak.lat[k]
    print(f"{k:<8}{len(xs):>8}{soak.err[k]:>8}{len(xs) / duration:>9.2f}{pct(xs, 50):>9.1f}{pct(xs, 99):>9.1f}")
for k, e in soak.first_err.items():
    print(f"first {k} error: {e}")
first = [s for s in samples if s[0] <= 60]
last = [s for s in samples if s[0] >= samples[-1][0] - 60]
for i, what in ((1, "RSS"), (2, "anonymous"), (3, "file-backed"), (4, "Rust heap live"), (5, "Rust heap resident")):
    print(f"{what}: first minute mean {statistics.mean(s[i] for s in first):.1f} MiB, "
          f"last minute mean {statistics.mean(s[i] for s in last):.1f} MiB, "
          f"max {max(s[i] for s in samples):.1f} MiB over {len(samples)} samples")
sys.exit(1 if sum(soak.err.values()) else 0)
PY

kill -TERM "$pid"
wait "$pid" || true
echo
echo "ragchat check:"
"$bin" check || rc=$?
exit "$rc"
