#!/usr/bin/env bash
# Fill the Grafana dashboard (ops/grafana/ragchat-dashboard.json) with a real
# load run on the scale-out stack, and draw it:
#
#   scripts/metrics-demo.sh [LOAD_SECONDS (default 90)] [CORPUS_DIR (default ../shared/eval/cranfield)] [OUT.png (default docs/images/dashboard.png)]
#
# Starts on loopback: PostgreSQL (a scratch database `ragchat_metrics`), a
# Qdrant server (scripts/qdrant-test-server.sh), a Redis server of its own,
# two API nodes (no jobs), one `ragchat worker` (probes on jobs.http_bind)
# and Prometheus (Debian's package) scraping all three every 2 s. Then:
# uploads the corpus through node A (the worker ingests it), runs wrk on both
# nodes with the corpus's queries (repeated, so the shared result cache
# hits), asks a few chat completions, fails logins until the limit refuses,
# stops Redis for 15 s in the middle and starts it again. At the end it saves
# an excerpt of node A's /metrics next to OUT (OUT-metrics.prom) and renders
# every dashboard panel from Prometheus with scripts/render-dashboard.py
# (Grafana itself is on no registry these machines reach; with Grafana,
# import the JSON and point it at the same Prometheus).
#
#   RAGCHAT_TEST_POSTGRES  admin URL (default postgres://postgres@127.0.0.1:5432/postgres)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
load_secs="${1:-90}"
corpus="${2:-../shared/eval/cranfield}"
out="${3:-docs/images/dashboard.png}"
# shellcheck source=scripts/qdrant-test-server.sh
source scripts/qdrant-test-server.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ragchat-target}"
export RAGCHAT_MODELS_DIR="${RAGCHAT_MODELS_DIR:-$PWD/models}"

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v prometheus >/dev/null || need+=(prometheus)
command -v redis-server >/dev/null || need+=(redis-server)
if [ ${#need[@]} -gt 0 ]; then
  apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install -q matplotlib

admin="${RAGCHAT_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}"
psql -q "$admin" -c "drop database if exists ragchat_metrics with (force)" -c "create database ragchat_metrics"
export RAGCHAT_DATABASE_URL="${admin%/*}/ragchat_metrics"
RAGCHAT_AUTH_JWT_SECRET="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
export RAGCHAT_AUTH_JWT_SECRET
cargo build --release --locked --bin ragchat
bin="$CARGO_TARGET_DIR/release/ragchat"

base="$(mktemp -d)"
pids=()
redis_pid=""
cleanup() {
  for p in "${pids[@]}" $redis_pid; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}" $redis_pid; do wait "$p" 2>/dev/null || true; done
  qdrant_test_server_stop
  rm -rf "$base"
}
trap cleanup EXIT
qdrant_test_server_start
trap cleanup EXIT
export RAGCHAT_QDRANT_URL="$RAGCHAT_TEST_QDRANT_URL"
unset RAGCHAT_TEST_QDRANT_URL QDRANT_TEST_HTTP_URL

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
redis_port=$(free_port)
start_redis() {
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no > "$base/redis.log" 2>&1 &
  redis_pid=$!
  for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && return; sleep 0.1; done
  echo "redis-server did not start" >&2; exit 1
}
start_redis
export RAGCHAT_REDIS_URL="redis://127.0.0.1:$redis_port"
export RAGCHAT_UPLOADS_DIR="$base/uploads"
export RAGCHAT_LEXICAL_POLL_INTERVAL_MS=500
# Room for the load (one user, two nodes); logins keep a tight limit.
export RAGCHAT_RATE_LIMIT_QUERY_PER_MINUTE=600000 RAGCHAT_RATE_LIMIT_QUERY_BURST=100000
export RAGCHAT_RATE_LIMIT_IP_FACTOR=1000 RAGCHAT_RATE_LIMIT_LOGIN_BURST=3 RAGCHAT_RATE_LIMIT_LOGIN_PER_MINUTE=1
export RAGCHAT_LOG_LEVEL=warn

RAGCHAT_DATA_DIR="$base/node-a" "$bin" user create admin --admin --password metrics-demo >/dev/null

# Start a node; its address goes to `addr` (not in a subshell, so `pids`
# keeps the server for cleanup).
start_node() {
  local name="$1"
  addr=""
  RAGCHAT_DATA_DIR="$base/$name" RAGCHAT_JOBS_WORKERS=0 "$bin" serve --bind 127.0.0.1:0 > "$base/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 3000); do
    addr=$(sed -n 's/^ragchat listening on //p' "$base/$name.log")
    [ -n "$addr" ] && curl -sf "$addr/ready" >/dev/null && break
    sleep 0.1
  done
  [ -n "$addr" ] || { echo "$name did not start: $(cat "$base/$name.log")" >&2; exit 1; }
}
start_node node-a
a="$addr"
start_node node-b
b="$addr"
worker_port=$(free_port)
RAGCHAT_DATA_DIR="$base/worker" RAGCHAT_JOBS_HTTP_BIND="127.0.0.1:$worker_port" \
  "$bin" worker --workers 1 > "$base/worker.log" 2>&1 &
pids+=($!)
w="http://127.0.0.1:$worker_port"
for _ in $(seq 600); do curl -sf "$w/ready" >/dev/null && break; sleep 0.1; done
curl -sf "$w/ready" >/dev/null || { echo "worker probes not up: $(cat "$base/worker.log")" >&2; exit 1; }

prom_port=$(free_port)
cat > "$base/prometheus.yml" <<YML
global: { scrape_interval: 2s, evaluation_interval: 2s }
scrape_configs:
  - job_name: ragchat
    static_configs:
      - targets: ["${a#http://}", "${b#http://}"]
        labels: { role: api }
      - targets: ["127.0.0.1:$worker_port"]
        labels: { role: worker }
YML
prometheus --config.file="$base/prometheus.yml" --storage.tsdb.path="$base/prom" \
  --web.listen-address="127.0.0.1:$prom_port" > "$base/prometheus.log" 2>&1 &
pids+=($!)
prom="http://127.0.0.1:$prom_port"
for _ in $(seq 100); do curl -sf "$prom/-/ready" >/dev/null && break; sleep 0.2; done
started=$(date +%s)
echo "metrics-demo: node A $a, node B $b, worker $w, Prometheus $prom"

token=$(curl -sf -X POST "$a/api/v1/auth/login" -H 'content-type: application/json' \
  -d '{"username": "admin", "password": "metrics-demo"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
auth=(-H "authorization: Bearer $token")
coll=$(curl -sf -X POST "$a/api/v1/collections" "${auth[@]}" -H 'content-type: application/json' \
  -d '{"name": "corpus", "public": true}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
job=$(curl -sf -X POST "$a/api/v1/collections/$coll/documents" "${auth[@]}" \
  -F "files=@$corpus/corpus.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["job"]["id"])')
echo "metrics-demo: uploading $(grep -c . "$corpus/corpus.jsonl") documents (job $job)"
while :; do
  state=$(curl -sf "$b/api/v1/jobs/$job" "${auth[@]}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
  case "$state" in succeeded) break ;; failed|cancelled|dead) echo "job $state" >&2; exit 1 ;; esac
  sleep 1
done
echo "metrics-demo: ingested after $(( $(date +%s) - started )) s"

lua="$base/queries.lua"
python3 - "$corpus/queries.jsonl" > "$lua" <<'PY'
import json, sys, urllib.parse
qs = [json.loads(l)["text"] for l in open(sys.argv[1]) if l.strip()][:60]
print("local paths = {")
for q in qs:
    print("  %s," % json.dumps("/api/v1/query?top_k=10&q=" + urllib.parse.quote(q)))
print("}")
print("math.randomseed(os.time())")
# Zipf-like: low indexes far more often, so the cache hits.
print("request = function()\n  local r = math.random()\n  local i = math.floor((#paths) ^ r)\n  return wrk.format('GET', paths[i])\nend")
PY
third=$(( load_secs / 3 ))
load_start=$(date +%s)
wrk -t1 -c6 -d"${load_secs}s" -s "$lua" -H "authorization: Bearer $token" "$a" > "$base/wrk-a.txt" &
wa=$!
wrk -t1 -c6 -d"${load_secs}s" -s "$lua" -H "authorization: Bearer $token" "$b" > "$base/wrk-b.txt" &
wb=$!
# A few chat answers and failed logins beside the search load.
(
  for _ in 1 2 3 4 5; do
    curl -s -o /dev/null -X POST "$a/v1/chat/completions" "${auth[@]}" -H 'content-type: application/json' \
      -d '{"model": "ragchat", "messages": [{"role": "user", "content": "What is a boundary layer?"}]}' || true
    curl -s -o /dev/null -X POST "$b/api/v1/auth/login" -H 'content-type: application/json' \
      -d '{"username": "mallory", "password": "wrong"}' || true
  done
) &
side=$!
# Redis goes away a third into the load, for 15 s.
wait_until() { local t=$(( $1 - $(date +%s) )); [ "$t" -le 0 ] || sleep "$t"; }
wait_until $(( load_start + third ))
echo "metrics-demo: stopping Redis for 15 s"
kill "$redis_pid"; wait "$redis_pid" 2>/dev/null || true; redis_pid=""
redis-cli -p "$redis_port" ping >/dev/null 2>&1 && { echo "Redis did not stop" >&2; exit 1; }
sleep 7
echo "metrics-demo: with Redis down, node A reports: $(curl -sf "$a/metrics" | grep -E '^ragchat_redis_(up|errors_total)' | tr '\n' ' ')"
sleep 8
start_redis
echo "metrics-demo: Redis is back"
wait "$wa" "$wb" "$side"
sleep 5
ended=$(date +%s)
grep -h "Requests/sec" "$base"/wrk-*.txt | sed 's/^/metrics-demo: wrk /'
mkdir -p "$(dirname "$out")"
echo "# node A's" > "${out%.png}-metrics.prom"
curl -sf "$a/metrics" | grep -v '^#' | grep -E '^ragchat_(http_requests_total\{method="GET",route="/api/v1/query"|query_duration_seconds_(count|sum)|query_stage_duration_seconds_count|cache_requests_total|embedder_(texts_total|batch_size_count|queue_wait_seconds_count)|jobs\{|index_entries|lexical_log_(positions_behind|behind_seconds)|redis_|vector_index_errors|rate_limited|process_resident|chat_answers)' \
  >> "${out%.png}-metrics.prom" || true
echo "# the worker's" >> "${out%.png}-metrics.prom"
curl -sf "$w/metrics" | grep -v '^#' | grep -E '^ragchat_(jobs_finished_total|job_duration_seconds_count|documents_ingested|chunks_ingested)' \
  >> "${out%.png}-metrics.prom" || true
echo "metrics-demo: /metrics excerpt in ${out%.png}-metrics.prom"
python3 scripts/render-dashboard.py "$prom" "$started" "$ended" "$out"
