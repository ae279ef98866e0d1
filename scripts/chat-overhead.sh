#!/usr/bin/env bash
# The time ragchat adds before a model's first token (retrieval + prompt +
# one local HTTP round trip), measured with an OpenAI-compatible mock that
# answers instantly, over the SciFact queries.
#
#   scripts/chat-overhead.sh [N_QUERIES (default 300)] [CORPUS_DIR (default ../shared/eval/scifact-train)]
#
# CHAT_BACKEND=local measures the local GGUF model instead of the mock: time
# to first token (prompt evaluation included) and generation tokens/s
# (completion tokens over the time after the first one). Its thread count
# comes from RAGCHAT_LOCAL_LLM_THREADS as usual.
#
# Uses the same scratch data directory as scripts/load-query.sh (SciFact
# ingested as the public collection `scifact`; ingested here if missing). Each
# query is asked in a new conversation through POST /conversations/{id}/messages
# (JSON) and the answer's own timings are collected; prints p50/p95/max of
# retrieval_ms and first_token_ms. Requests run one at a time.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
n="${1:-300}"
corpus_dir="${2:-../shared/eval/scifact-train}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ragchat-target}"
export RAGCHAT_MODELS_DIR="${RAGCHAT_MODELS_DIR:-$PWD/models}"
export RAGCHAT_DATA_DIR="${LOAD_DATA_DIR:-/tmp/ragchat-load}"
export RAGCHAT_AUTH_JWT_SECRET="${RAGCHAT_AUTH_JWT_SECRET:-$(python3 -c 'import secrets; print(secrets.token_hex(32))')}"
export RAGCHAT_RATE_LIMIT_ENABLED=false RAGCHAT_LOG_LEVEL=warn

[ -n "${LOAD_SKIP_BUILD:-}" ] || cargo build --release --locked --bin ragchat
bin="$CARGO_TARGET_DIR/release/ragchat"
"$bin" ingest "$corpus_dir/corpus.jsonl" --collection scifact --public >/dev/null
"$bin" user create loaduser --password load-test-password >/dev/null 2>&1 || true

exec python3 - "$bin" "$corpus_dir/queries.jsonl" "$n" <<'PY'
import json, subprocess, sys, threading, time, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

binary, queries_file, n = sys.argv[1], sys.argv[2], int(sys.argv[3])

class Instant(BaseHTTPRequestHandler):
    """An OpenAI-compatible server whose model answers at once."""
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without this, Nagle and
    # delayed ACKs add ~40 ms that would be counted against ragchat.
    disable_nagle_algorithm = True
    def log_message(self, *a): pass
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "instant",
                 "choices": [{"index": 0, "delta": {"content": "Answer [1]."}, "finish_reason": None}]}
        body = ("data: %s\n\ndata: [DONE]\n\n" % json.dumps(chunk)).encode()
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

mock = ThreadingHTTPServer(("127.0.0.1", 0), Instant)
threading.Thread(target=mock.serve_forever, daemon=True).start()
backend = __import__("os").environ.get("CHAT_BACKEND", "mock")
if backend == "local":
    env = dict(__import__("os").environ, RAGCHAT_CHAT_BACKEND="local")
else:
    env = dict(__import__("os").environ,
               RAGCHAT_CHAT_BACKEND="openai", RAGCHAT_LLM_MODEL="instant",
               RAGCHAT_LLM_BASE_URL="http://127.0.0.1:%d/v1" % mock.server_address[1])
server = subprocess.Popen([binary, "serve", "--bind", "127.0.0.1:0"], env=env,
                          stdout=subprocess.PIPE, text=True)
try:
    base = None
    for line in server.stdout:
        if line.startswith("ragchat listening on "):
            base = line.split()[-1]
            break
    for _ in range(600):
        try:
            if urllib.request.urlopen(base + "/ready").status == 200:
                break
        except Exception:
            time.sleep(0.1)

    def call(method, path, body=None, token=None):
        req = urllib.request.Request(base + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
        if token:
            req.add_header("authorization", "Bearer " + token)
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read() or b"null")

    token = call("POST", "/api/v1/auth/login",
                 {"username": "loaduser", "password": "load-test-password"})["access_token"]
    queries = [json.loads(l)["text"] for l in open(queries_file) if l.strip()][:n]
    retrieval, first, refused, rates, prompt_tokens, completion = [], [], 0, [], [], []
    for q in queries:
        conv = call("POST", "/api/v1/conversations", {}, token)["id"]
        r = call("POST", "/api/v1/conversations/%s/messages" % conv,
                 {"message": q, "collections": ["scifact"]}, token)
        retrieval.append(r["timings"]["retrieval_ms"])
        if r["timings"]["first_token_ms"] is None:
            refused += 1
        else:
            t = r["timings"]
            first.append(t["first_token_ms"])
            u = r["usage"]
            prompt_tokens.append(u["prompt_tokens"])
            completion.append(u["completion_tokens"])
            gen_ms = t["total_ms"] - t["first_token_ms"]
            if u["completion_tokens"] > 1 and gen_ms > 0:
                rates.append((u["completion_tokens"] - 1) / (gen_ms / 1000))

    def pct(xs, p):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]
    model = "local GGUF model" if backend == "local" else "instant OpenAI-compatible model"
    dataset = __import__("os").path.basename(__import__("os").path.dirname(__import__("os").path.abspath(queries_file)))
    print("%d %s queries, one at a time, %s" % (len(queries), dataset, model))
    rows = [("retrieval_ms", retrieval), ("first_token_ms", first)]
    if backend == "local":
        rows += [("prompt_tokens", prompt_tokens), ("answer_tokens", completion), ("tokens_per_s", rates)]
    for name, xs in rows:
        if xs:
            print("%-15s p50 %7.1f  p95 %7.1f  max %7.1f  (n=%d)" % (name, pct(xs, 50), pct(xs, 95), max(xs), len(xs)))
    print("refused (no model call): %d" % refused)
finally:
    server.terminate()
    server.wait()
PY
