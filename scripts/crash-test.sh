#!/usr/bin/env bash
# Crash test of the job queue: upload the SciFact corpus through the API, kill
# the server (and its in-process worker) with SIGKILL at a random point while
# it ingests, start it again, and let the job finish. Then `ragchat check`
# must find the DB, the vector index and the full-text index in agreement,
# with exactly one copy of every chunk, and the document count must match.
#
#   scripts/crash-test.sh [KILLS (default 1)] [CORPUS_DIR (default ../shared/eval/scifact-train)]
#
# Also prints the upload's ingestion throughput (documents/s, chunks/s, the
# server's peak RSS) from the final run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
kills="${1:-1}"
corpus="${2:-../shared/eval/scifact-train}/corpus.jsonl"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ragchat-target}"
export RAGCHAT_MODELS_DIR="${RAGCHAT_MODELS_DIR:-$PWD/models}"
export RAGCHAT_DATA_DIR="${CRASH_DATA_DIR:-$(mktemp -d /tmp/ragchat-crash.XXXXXX)}"
export RAGCHAT_AUTH_JWT_SECRET="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
export RAGCHAT_RATE_LIMIT_ENABLED=false RAGCHAT_LOG_LEVEL=warn RAGCHAT_CHAT_BACKEND=extractive
# A killed worker's lease lapses after this; the restarted one takes the job.
export RAGCHAT_JOBS_LEASE_SECS="${RAGCHAT_JOBS_LEASE_SECS:-6}"
[ -f "$corpus" ] || { echo "no corpus at $corpus" >&2; exit 2; }

[ -n "${CRASH_SKIP_BUILD:-}" ] || cargo build --release --locked --bin ragchat
bin="$CARGO_TARGET_DIR/release/ragchat"
"$bin" user create crashadmin --admin --password crash-test-password >/dev/null

exec python3 - "$bin" "$corpus" "$kills" <<'PY'
import json, os, random, signal, subprocess, sys, time, urllib.request, uuid

binary, corpus, kills = sys.argv[1], sys.argv[2], int(sys.argv[3])
server = None
base = None

def start():
    global server, base
    server = subprocess.Popen([binary, "serve", "--bind", "127.0.0.1:0"],
                              stdout=subprocess.PIPE, text=True)
    for line in server.stdout:
        if line.startswith("ragchat listening on "):
            base = line.split()[-1]
            break
    for _ in range(600):
        try:
            if urllib.request.urlopen(base + "/ready").status == 200:
                return
        except Exception:
            time.sleep(0.1)
    sys.exit("server did not become ready")

def call(method, path, body=None, token=None, raw=None, ctype="application/json"):
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(base + path, method=method, data=data,
                                 headers={"content-type": ctype})
    if token:
        req.add_header("authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read() or b"null")

def peak_rss_kib(pid):
    try:
        for line in open("/proc/%d/status" % pid):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0

start()
token = call("POST", "/api/v1/auth/login",
             {"username": "crashadmin", "password": "crash-test-password"})["access_token"]
coll = call("POST", "/api/v1/collections", {"name": "scifact"}, token)["id"]
boundary = uuid.uuid4().hex
payload = open(corpus, "rb").read()
body = (("--%s\r\nContent-Disposition: form-data; name=\"files\"; filename=\"corpus.jsonl\"\r\n"
         "Content-Type: application/octet-stream\r\n\r\n" % boundary).encode()
        + payload + ("\r\n--%s--\r\n" % boundary).encode())
t0 = time.time()
job = call("POST", "/api/v1/collections/%s/documents" % coll, raw=body, token=token,
           ctype="multipart/form-data; boundary=" + boundary)["job"]
total = sum(1 for l in payload.splitlines() if l.strip())
print("uploaded %s (%d documents, %.1f MB) as job %s" % (corpus, total, len(payload) / 1e6, job["id"]))

rng = random.Random(int(os.environ.get("CRASH_SEED", time.time())))
for k in range(kills):
    target = rng.randint(total // 10, total * 8 // 10)
    while True:
        j = call("GET", "/api/v1/jobs/" + job["id"], token=token)
        done = (j.get("progress") or {}).get("documents_done", 0)
        if done >= target or j["state"] not in ("queued", "running"):
            break
        time.sleep(0.2)
    print("kill %d: SIGKILL at %d/%d documents (state %s, attempt %d)"
          % (k + 1, done, total, j["state"], j["attempts"]))
    server.send_signal(signal.SIGKILL)
    server.wait()
    start()
    token = call("POST", "/api/v1/auth/login",
                 {"username": "crashadmin", "password": "crash-test-password"})["access_token"]
    t0 = time.time()

while True:
    j = call("GET", "/api/v1/jobs/" + job["id"], token=token)
    if j["state"] not in ("queued", "running"):
        break
    time.sleep(0.5)
elapsed = time.time() - t0
rss = peak_rss_kib(server.pid)
r = j.get("result") or {}
print("job %s after %d attempt(s): %s" % (j["state"], j["attempts"], j.get("last_error") or "ok"))
print("result: added %s, updated %s, unchanged %s, chunks embedded %s, kept %s; skipped %s"
      % (r.get("documents_added"), r.get("documents_updated"), r.get("documents_unchanged"),
         r.get("chunks_embedded"), r.get("chunks_kept"), json.dumps(r.get("skipped"))))
print("last attempt: %.1f s, %.1f documents/s, %.1f chunks/s, server peak RSS %.0f MiB"
      % (elapsed, r.get("documents_per_sec", 0), r.get("chunks_per_sec", 0), rss / 1024))
docs = call("GET", "/api/v1/collections/" + coll, token=token)
server.send_signal(signal.SIGTERM)
server.wait()
if j["state"] != "succeeded":
    sys.exit("FAIL: the job did not succeed")
skipped = sum((r.get("skipped") or {}).values())
print("collection: %d documents, %d chunks (corpus %d, skipped %d)"
      % (docs["documents"], docs["chunks"], total, skipped))
if docs["documents"] + skipped != total:
    sys.exit("FAIL: documents in the DB + skipped != documents in the corpus")
check = subprocess.run([binary, "check"], capture_output=True, text=True)
print(check.stdout.strip())
if check.returncode != 0:
    sys.exit("FAIL: ragchat check found differences:\n" + check.stderr)
print("PASS")
PY
