#!/usr/bin/env bash
# Runs every test: installs the models the tests need (idempotent), then the
# unit and black-box suites twice: on SQLite with the embedded vector index
# (qdrant-edge), and on PostgreSQL with the vectors on a real Qdrant server
# (started here by scripts/qdrant-test-server.sh, stopped at exit).
# Extra arguments go to `cargo test`.
#
# Environment:
#   RAGCHAT_TEST_BACKENDS  which runs to do, comma- or space-separated:
#                          `sqlite,postgres` (default), `sqlite` or `postgres`
#   RAGCHAT_TEST_POSTGRES  admin URL of the PostgreSQL server the tests create
#                          their databases on (default
#                          postgres://postgres@127.0.0.1:5432/postgres); a local
#                          Debian cluster that is down is started
#   RAGCHAT_TEST_QDRANT_URL  gRPC URL of a running Qdrant server for the
#                          PostgreSQL run; unset, one is started (the binary is
#                          found as scripts/qdrant-test-server.sh says), and
#                          the run fails if none can be
#   RAGCHAT_TEST_REDIS_SERVER  the redis-server binary the Redis tests start
#                          their own servers with (default: the one on PATH,
#                          installed with apt-get when missing)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/qdrant-test-server.sh
source scripts/qdrant-test-server.sh

# Outside the clone, so a fresh checkout (and CI) reuses earlier builds.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ragchat-target}"
export RAGCHAT_MODELS_DIR="${RAGCHAT_MODELS_DIR:-$PWD/models}"

backends="${RAGCHAT_TEST_BACKENDS:-sqlite,postgres}"
backends="${backends//,/ }"
pg_url="${RAGCHAT_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}"
qdrant_url="${RAGCHAT_TEST_QDRANT_URL:-}"
# The SQLite run must not see them: the test helpers switch on their presence.
unset RAGCHAT_TEST_POSTGRES RAGCHAT_TEST_QDRANT_URL RAGCHAT_TEST_REQUIRE_QDRANT

for backend in $backends; do
    case "$backend" in
        sqlite | postgres) ;;
        *)
            echo "RAGCHAT_TEST_BACKENDS: unknown backend \`$backend\` (use sqlite and/or postgres)" >&2
            exit 2
            ;;
    esac
done

# Host and port of a URL such as postgres://user:pw@host:port/db?opts.
pg_host_port() {
    local rest="${pg_url#*://}"
    rest="${rest##*@}"
    rest="${rest%%[/?]*}"
    pg_host="${rest%%:*}"
    pg_port=5432
    if [[ "$rest" == *:* ]]; then pg_port="${rest##*:}"; fi
    pg_host="${pg_host:-127.0.0.1}"
}

pg_ready() {
    if command -v pg_isready >/dev/null; then
        pg_isready -q -h "$pg_host" -p "$pg_port"
    else
        # No client tools: an open port is the best we can check.
        (exec 3<>"/dev/tcp/$pg_host/$pg_port") 2>/dev/null
    fi
}

ensure_postgres() {
    pg_host_port
    if pg_ready; then return 0; fi
    local local_host=false
    case "$pg_host" in 127.0.0.1 | localhost | ::1 | "[::1]") local_host=true ;; esac
    local version=""
    if [[ -d /etc/postgresql ]]; then
        version="$(ls /etc/postgresql | sort -V | tail -n 1)"
    fi
    if ! $local_host || [[ -z "$version" ]] || ! command -v pg_ctlcluster >/dev/null; then
        echo "PostgreSQL at $pg_host:$pg_port is not reachable and no local cluster can be started;" >&2
        echo "start it, point RAGCHAT_TEST_POSTGRES at a server, or skip it with RAGCHAT_TEST_BACKENDS=sqlite" >&2
        return 1
    fi
    echo "PostgreSQL at $pg_host:$pg_port is not running; starting cluster $version/main"
    if ! pg_ctlcluster --skip-systemctl-redirect "$version" main start; then
        echo "could not start PostgreSQL $version/main (see /var/log/postgresql/postgresql-$version-main.log);" >&2
        echo "skip it with RAGCHAT_TEST_BACKENDS=sqlite" >&2
        return 1
    fi
    local i
    for i in $(seq 60); do
        if pg_ready; then return 0; fi
        sleep 0.5
    done
    echo "PostgreSQL $version/main started but does not accept connections on $pg_host:$pg_port after 30 s" >&2
    return 1
}

scripts/setup-build-deps.sh
# The Redis tests start (and stop) servers of their own, on free ports.
if [[ -z "${RAGCHAT_TEST_REDIS_SERVER:-}" ]] && ! command -v redis-server >/dev/null; then
    sudo=""
    if [[ "$(id -u)" != 0 ]]; then sudo=sudo; fi
    echo "test: installing redis-server"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends redis-server >/dev/null
fi
export RAGCHAT_TEST_REQUIRE_REDIS=1
# The web app's tests drive headless Chromium through chromedriver.
if ! command -v chromedriver >/dev/null || ! command -v chromium >/dev/null; then
    sudo=""
    if [[ "$(id -u)" != 0 ]]; then sudo=sudo; fi
    echo "test: installing chromium and chromium-driver"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi
export RAGCHAT_TEST_REQUIRE_BROWSER=1
# With the local chat model, so its black-box tests run rather than skip.
scripts/setup-models.sh --with-llm "$RAGCHAT_MODELS_DIR"
export RAGCHAT_TEST_REQUIRE_LLM=1

log="$(mktemp)"
trap 'rm -f "$log"; qdrant_test_server_stop' EXIT
summary=()
notes=()
status=0
for backend in $backends; do
    echo
    echo "==================== tests on $backend ===================="
    env_args=()
    label="$backend"
    if [[ "$backend" == postgres ]]; then
        if ! ensure_postgres; then
            notes+=("$backend: not run (PostgreSQL unavailable)")
            status=1
            continue
        fi
        if [[ -z "$qdrant_url" ]]; then
            if ! qdrant_test_server_start; then
                notes+=("$backend: not run (no Qdrant server)")
                status=1
                continue
            fi
            # Restore this script's trap (the start sets its own).
            trap 'rm -f "$log"; qdrant_test_server_stop' EXIT
            qdrant_url="$RAGCHAT_TEST_QDRANT_URL"
            unset RAGCHAT_TEST_QDRANT_URL QDRANT_TEST_HTTP_URL
        fi
        # REQUIRE: a test that needs the server fails instead of skipping.
        env_args=("RAGCHAT_TEST_POSTGRES=$pg_url" "RAGCHAT_TEST_QDRANT_URL=$qdrant_url"
            "RAGCHAT_TEST_REQUIRE_QDRANT=1")
        label="postgres+qdrant-server"
    else
        label="sqlite+qdrant-edge"
    fi
    # Same flags for both runs, so the second one reuses the first one's build;
    # the backend is chosen at run time by the environment alone.
    rc=0
    env "${env_args[@]}" cargo test --release --locked "$@" | tee "$log" || rc=$?
    if [[ $rc -ne 0 ]]; then
        status=1
        notes+=("$label: cargo test exited $rc")
    fi
    # libtest's ignored tests are reported as skipped, the word CI reads.
    summary+=("$(awk -v b="$label" '/^test result:/ { p += $4; f += $6; i += $8 }
        END { printf "%s: %d passed, %d failed, %d skipped", b, p, f, i }' "$log")")
done

echo
echo "==================== summary ===================="
if [[ ${#notes[@]} -gt 0 ]]; then printf '%s\n' "${notes[@]}"; fi
printf '%s\n' "${summary[@]}"
exit "$status"
