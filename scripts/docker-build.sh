#!/usr/bin/env bash
# Build the real Dockerfile and run the image, on a machine without a Docker
# daemon or access to a container registry (this one), with Debian's buildah.
#
#   scripts/docker-build.sh              stand-ins, build, run (all below)
#   scripts/docker-build.sh --prepare    only the base image stand-ins
#   scripts/docker-build.sh --no-build   run the ragchat:dev image built before
#
# 1. Stand-ins for the base images the Dockerfile names, made once and kept in
#    containers-storage (vfs driver) for later runs:
#      debian:bookworm-slim   debootstrap --variant=minbase bookworm
#      rust:1.95-bookworm     debootstrap with the compilers, plus this
#                             machine's Rust 1.95 toolchain in /usr/local/rustup
#                             and /usr/local/cargo, as in the official image
#    from the Debian mirror apt uses here.
# 2. `buildah bud --pull=never` of the Dockerfile on a clean export of HEAD
#    (RAGCHAT_DOCKER_CONTEXT=worktree: the working tree as it is), tagged
#    ragchat:dev; prints its duration and the image size. The cargo build
#    runs inside it (about 40 minutes cold on 2 cores; its cache mounts make
#    later builds incremental).
# 3. The image's entrypoint run by chroot into the mounted image, as the
#    image's user with the image's environment, against the local PostgreSQL
#    (a fresh database, dropped after), Redis and a Qdrant server started here
#    (scripts/qdrant-test-server.sh): `serve` as an API node without in-process
#    jobs until GET /ready answers 200 (also checked with the image's
#    HEALTHCHECK command), an admin created with `ragchat user create`, the
#    image's sample corpus uploaded over HTTP and ingested by `ragchat worker`
#    from the image (the second role) through the shared uploads directory, a
#    /query that must return results, and the README's `ragchat ingest corpus`.
#    Everything is stopped and removed at the end, also on failure.
# Ends with one summary line; exits nonzero on any failure. Needs root (chroot
# and mounts); installs buildah, podman, debootstrap and docker-compose with
# apt-get when missing.
#
# Environment: RAGCHAT_DOCKER_CACHE (work directory, default
# /var/tmp/ragchat-docker), RAGCHAT_DOCKER_IMAGE (default ragchat:dev),
# RAGCHAT_DOCKER_DB (default ragchat_docker_check), RAGCHAT_DOCKER_PG (PostgreSQL server URL, default
# postgres://postgres@127.0.0.1:5432), RAGCHAT_DOCKER_REDIS (default
# redis://127.0.0.1:6379/15: a database of its own on the local Redis),
# RAGCHAT_QDRANT_SERVER (see scripts/qdrant-test-server.sh).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${RAGCHAT_DOCKER_CACHE:-/var/tmp/ragchat-docker}"
IMAGE="${RAGCHAT_DOCKER_IMAGE:-ragchat:dev}"
SLIM=docker.io/library/debian:bookworm-slim
RUST_VERSION=1.95.0
RUST_IMAGE=docker.io/library/rust:1.95-bookworm
PG="${RAGCHAT_DOCKER_PG:-postgres://postgres@127.0.0.1:5432}"
DB="${RAGCHAT_DOCKER_DB:-ragchat_docker_check}"
REDIS_URL="${RAGCHAT_DOCKER_REDIS:-redis://127.0.0.1:6379/15}"
SD=(--storage-driver vfs)

MODE=all
case "${1:-}" in
    "") ;;
    --prepare) MODE=prepare ;;
    --no-build) MODE=run ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: $0 [--prepare|--no-build]" >&2; exit 2 ;;
esac

log() { printf 'docker-build: %s\n' "$*"; }
die() { printf 'docker-build: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot and mounts need it)"
mkdir -p "$CACHE"

# ---------------------------------------------------------------- packages
need=()
for pair in buildah:buildah podman:podman debootstrap:debootstrap docker-compose:docker-compose \
    psql:postgresql-client createdb:postgresql-client redis-cli:redis-tools curl:curl python3:python3; do
    command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

image_exists() { podman "${SD[@]}" image exists "$1"; }

# This machine's own CA certificates (a TLS-intercepting proxy between it and
# PyPI and crates.io): the stand-ins trust them as the host does, so that the
# build's downloads work here. Only the stand-ins, made on this machine, carry
# them; an image built on the real base images does not.
EXTRA_CA=()
while IFS= read -r f; do EXTRA_CA+=("$f"); done < <(find /usr/local/share/ca-certificates -name '*.crt' 2>/dev/null | sort)
EXTRA_CA_SUM=none
[ ${#EXTRA_CA[@]} -eq 0 ] || EXTRA_CA_SUM="$(cat "${EXTRA_CA[@]}" | sha256sum | cut -c1-16)"

# A stand-in made here before, with the machine's current CA certificates.
standin_current() {
    image_exists "$1" || return 1
    [ "$(podman "${SD[@]}" image inspect --format '{{index .Labels "ragchat.extra-ca"}}' "$1")" = "$EXTRA_CA_SUM" ]
}

# The Debian mirror apt uses here (deb822 or one-line sources).
debian_mirror() {
    local uri
    uri="$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' |
        grep -v -- '-security' | head -n1 || true)"
    [ -n "$uri" ] || uri="$(grep -hs '^deb ' /etc/apt/sources.list | awk '$3 ~ /^bookworm$/ {print $2}' | head -n1 || true)"
    echo "${uri:-http://deb.debian.org/debian}"
}

# apt sources inside a stand-in, like the official images' (deb822).
write_sources() {
    local root="$1" mirror="$2"
    rm -f "$root/etc/apt/sources.list"
    mkdir -p "$root/etc/apt/sources.list.d"
    cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
}

# debootstrap ROOT [extra packages]
bootstrap() {
    local root="$1" include="${2:-}" mirror
    mirror="$(debian_mirror)"
    # A root finished by an earlier run that failed later on is kept.
    [ -f "$root.done" ] && [ -d "$root" ] && { log "reusing $root"; return; }
    rm -rf "$root" "$root.done"
    log "debootstrap bookworm into $root from $mirror${include:+ (with $include)}"
    debootstrap --variant=minbase ${include:+--include="$include"} bookworm "$root" "$mirror" \
        >"$root.debootstrap.log" 2>&1 || { tail -n 30 "$root.debootstrap.log" >&2; die "debootstrap failed"; }
    write_sources "$root" "$mirror"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    if [ ${#EXTRA_CA[@]} -gt 0 ]; then
        mkdir -p "$root/usr/local/share/ca-certificates"
        cp "${EXTRA_CA[@]}" "$root/usr/local/share/ca-certificates/"
        # Without the ca-certificates package (slim), it adds them when installed.
        if [ -x "$root/usr/sbin/update-ca-certificates" ]; then
            chroot "$root" /usr/sbin/update-ca-certificates >/dev/null
        fi
    fi
    touch "$root.done"
}

make_slim() {
    standin_current "$SLIM" && { log "stand-in $SLIM: cached"; return; }
    local root="$CACHE/rootfs-slim" t=$SECONDS
    bootstrap "$root"
    tar -C "$root" -c . | podman "${SD[@]}" import --change 'CMD ["bash"]' \
        --change "LABEL ragchat.extra-ca=$EXTRA_CA_SUM" - "$SLIM" >/dev/null
    rm -rf "$root" "$root.done"
    log "stand-in $SLIM: made in $((SECONDS - t)) s"
}

make_rust() {
    standin_current "$RUST_IMAGE" && { log "stand-in $RUST_IMAGE: cached"; return; }
    local root="$CACHE/rootfs-rust" t=$SECONDS tc rustup_bin name
    command -v rustup >/dev/null || die "rustup not found: the stand-in copies this machine's Rust $RUST_VERSION"
    tc="$(rustup which --toolchain "$RUST_VERSION" rustc 2>/dev/null)" ||
        die "no Rust $RUST_VERSION toolchain here (rustup toolchain list)"
    tc="$(realpath "$(dirname "$tc")/..")"
    rustup_bin="$(realpath "$(command -v rustup)")"
    # What the official image builds on (buildpack-deps:bookworm), the parts a
    # Rust build uses.
    bootstrap "$root" ca-certificates,curl,git,gcc,g++,make,libc6-dev,dpkg-dev,pkg-config,libssl-dev,python3,xz-utils,file,procps
    # The toolchain as rustup installs it in the official image.
    name="$RUST_VERSION-x86_64-unknown-linux-gnu"
    mkdir -p "$root/usr/local/rustup/toolchains/$name" "$root/usr/local/cargo/bin"
    tar -C "$tc" --exclude=./share/doc -c . | tar -C "$root/usr/local/rustup/toolchains/$name" -x
    printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "minimal"\nauto_self_update = "disable"\n' \
        "$name" >"$root/usr/local/rustup/settings.toml"
    install -m 0755 "$rustup_bin" "$root/usr/local/cargo/bin/rustup"
    for proxy in cargo cargo-clippy cargo-fmt clippy-driver rustc rustdoc rustfmt rust-gdb rust-lldb; do
        ln -sf rustup "$root/usr/local/cargo/bin/$proxy"
    done
    chmod -R a+w "$root/usr/local/rustup" "$root/usr/local/cargo"
    local env=(RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo
        PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
        RUST_VERSION="$RUST_VERSION")
    # rustup's proxies need /proc.
    mount -t proc proc "$root/proc"
    local ok=0
    chroot "$root" /usr/bin/env -i "${env[@]}" sh -c 'rustc --version && cargo --version' |
        sed 's/^/docker-build: stand-in: /' && ok=1
    umount "$root/proc"
    [ "$ok" = 1 ] || die "the Rust toolchain does not run in the stand-in"
    local changes=(--change 'CMD ["bash"]' --change "LABEL ragchat.extra-ca=$EXTRA_CA_SUM")
    for e in "${env[@]}"; do changes+=(--change "ENV $e"); done
    tar -C "$root" -c . | podman "${SD[@]}" import "${changes[@]}" - "$RUST_IMAGE" >/dev/null
    rm -rf "$root" "$root.done"
    log "stand-in $RUST_IMAGE: made in $((SECONDS - t)) s"
}

# ---------------------------------------------------------------- cleanup
PIDS=()
MOUNTS=()
CTR=""
CTX=""
DB_MADE=0
cleanup() {
    local rc=$? pid m i
    set +e
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do
        kill "$pid" 2>/dev/null && { timeout 20 tail --pid="$pid" -f /dev/null || kill -9 "$pid"; }
    done
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        m="${MOUNTS[$i]}"
        umount "$m" 2>/dev/null || umount -l "$m"
    done
    if [ -n "$CTR" ]; then
        buildah "${SD[@]}" umount "$CTR" >/dev/null
        buildah "${SD[@]}" rm "$CTR" >/dev/null
    fi
    declare -F qdrant_test_server_stop >/dev/null && qdrant_test_server_stop
    [ "$DB_MADE" = 1 ] && psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
    [ -n "$CTX" ] && rm -rf "$CTX"
    [ "$rc" = 0 ] || echo "docker-build: FAILED (exit $rc)" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- 1. stand-ins
make_slim
make_rust
[ "$MODE" = prepare ] && { log "stand-ins ready"; exit 0; }

# ---------------------------------------------------------------- 2. build
BUILD_SECS=-
if [ "$MODE" = all ]; then
    if [ "${RAGCHAT_DOCKER_CONTEXT:-head}" = worktree ]; then
        ctx="$REPO"
        log "building the working tree $REPO"
    else
        CTX="$(mktemp -d "$CACHE/context.XXXXXX")"
        git -C "$REPO" archive HEAD | tar -C "$CTX" -x
        ctx="$CTX"
        log "building commit $(git -C "$REPO" rev-parse --short HEAD) ($(git -C "$REPO" log -1 --format=%s HEAD | cut -c1-60))"
    fi
    [ -f "$ctx/Dockerfile" ] || die "no Dockerfile in $ctx (commit it, or RAGCHAT_DOCKER_CONTEXT=worktree)"
    t0=$(date +%s)
    # --format docker keeps HEALTHCHECK (the OCI format has none).
    buildah "${SD[@]}" bud --isolation chroot --pull=never --format docker \
        -t "$IMAGE" -f "$ctx/Dockerfile" "$ctx" || die "buildah bud failed"
    BUILD_SECS=$(($(date +%s) - t0))
    log "build: $BUILD_SECS s ($((BUILD_SECS / 60)) min $((BUILD_SECS % 60)) s)"
    [ -n "$CTX" ] && { rm -rf "$CTX"; CTX=""; }
fi
image_exists "$IMAGE" || die "no image $IMAGE (build it first)"
podman "${SD[@]}" images --filter reference="$IMAGE" \
    --format 'docker-build: image {{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}'
SIZE="$(podman "${SD[@]}" images --filter reference="$IMAGE" --format '{{.Size}}' | head -n1)"

# ---------------------------------------------------------------- 3. run
# The image's configuration.
buildah "${SD[@]}" inspect --type image "$IMAGE" >"$CACHE/image.json"
eval "$(python3 - "$CACHE/image.json" <<'EOF'
import json, shlex, sys
c = json.load(open(sys.argv[1]))["Docker"]["config"]
q = lambda v: shlex.quote(v)
arr = lambda name, xs: print("%s=(%s)" % (name, " ".join(q(x) for x in (xs or []))))
arr("IMG_ENV", c.get("Env"))
arr("IMG_ENTRYPOINT", c.get("Entrypoint"))
arr("IMG_CMD", c.get("Cmd"))
arr("IMG_HEALTH", (c.get("Healthcheck") or {}).get("Test"))
print("IMG_USER=%s" % q(c.get("User") or "root"))
print("IMG_WORKDIR=%s" % q(c.get("WorkingDir") or "/"))
EOF
)"
log "image: user $IMG_USER, workdir $IMG_WORKDIR, entrypoint ${IMG_ENTRYPOINT[*]}, cmd ${IMG_CMD[*]}, healthcheck ${IMG_HEALTH[*]:-none}"
[ "${IMG_CMD[*]}" = serve ] || die "the image's CMD is not serve"
[ "${IMG_HEALTH[0]:-}" = CMD ] || die "the image has no exec-form HEALTHCHECK"

CTR="$(buildah "${SD[@]}" from --pull=never "$IMAGE")"
ROOT="$(buildah "${SD[@]}" mount "$CTR")"
for m in proc dev sys; do
    case "$m" in
        proc) mount -t proc proc "$ROOT/proc" ;;
        *) mount --bind "/$m" "$ROOT/$m" ;;
    esac
    MOUNTS+=("$ROOT/$m")
done
cp /etc/hosts "$ROOT/etc/hosts" 2>/dev/null || true

# The image's user as numbers (chroot looks names up outside).
user="${IMG_USER%%:*}"
uid="$(awk -F: -v u="$user" '$1 == u || $3 == u {print $3; exit}' "$ROOT/etc/passwd")"
gid="$(awk -F: -v u="$user" '$1 == u || $3 == u {print $4; exit}' "$ROOT/etc/passwd")"
[ -n "$uid" ] && [ "$uid" != 0 ] || die "the image's user ($IMG_USER) is missing or root"

# image_cmd [VAR=value...] -- CMD...: sets CMDLINE to run CMD in the image as
# its user, with its environment plus the given variables, in its working
# directory. Run "${CMDLINE[@]}" as a simple command, so that in the
# background $! is the process itself (chroot and env exec into it).
image_cmd() {
    local vars=()
    while [ "$1" != -- ]; do vars+=("$1"); shift; done
    shift
    CMDLINE=(chroot --userspec="$uid:$gid" --groups="$gid" "$ROOT"
        /usr/bin/env -i -C "$IMG_WORKDIR" "${IMG_ENV[@]}" "${vars[@]}" "$@")
}
in_image() { image_cmd "$@"; "${CMDLINE[@]}"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Services: PostgreSQL, Redis, Qdrant.
psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null ||
    die "PostgreSQL at $PG does not answer"
psql -q "$PG/postgres" -c "CREATE DATABASE $DB" >/dev/null
DB_MADE=1
redis-cli -u "$REDIS_URL" ping | grep -q PONG || die "Redis at $REDIS_URL does not answer"
# shellcheck source=scripts/qdrant-test-server.sh
source "$REPO/scripts/qdrant-test-server.sh"
qdrant_test_server_start || die "cannot start a Qdrant server"
trap cleanup EXIT # qdrant_test_server_start set its own

PORT="$(free_port)"
BASE="http://127.0.0.1:$PORT"
JWT="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
COMMON=(
    RAGCHAT_DATABASE_URL="$PG/$DB"
    RAGCHAT_QDRANT_URL="$RAGCHAT_TEST_QDRANT_URL"
    RAGCHAT_AUTH_JWT_SECRET="$JWT"
    RAGCHAT_UPLOADS_DIR=/var/lib/ragchat-uploads
    RAGCHAT_REDIS_URL="$REDIS_URL"
)
API=("${COMMON[@]}" RAGCHAT_BIND="127.0.0.1:$PORT" RAGCHAT_JOBS_WORKERS=0)
LOGS="$CACHE/run-$DB"
rm -rf "$LOGS"
mkdir -p "$LOGS"

# Migrations first (what a deployment's first node does); it also tells
# whether this build knows RAGCHAT_REDIS_URL.
REDIS=on
if ! in_image "${API[@]}" -- "${IMG_ENTRYPOINT[@]}" migrate >"$LOGS/migrate.log" 2>&1; then
    if grep -q 'unknown environment variable `RAGCHAT_REDIS_URL`' "$LOGS/migrate.log"; then
        log "warning: this build of ragchat does not know RAGCHAT_REDIS_URL; running without Redis"
        REDIS=off
        COMMON=("${COMMON[@]:0:4}")
        API=("${COMMON[@]}" RAGCHAT_BIND="127.0.0.1:$PORT" RAGCHAT_JOBS_WORKERS=0)
        in_image "${API[@]}" -- "${IMG_ENTRYPOINT[@]}" migrate >"$LOGS/migrate.log" 2>&1 ||
            { cat "$LOGS/migrate.log" >&2; die "ragchat migrate failed"; }
    else
        cat "$LOGS/migrate.log" >&2
        die "ragchat migrate failed"
    fi
fi

# The API node: the image's entrypoint and default command.
image_cmd "${API[@]}" -- "${IMG_ENTRYPOINT[@]}" "${IMG_CMD[@]}"
"${CMDLINE[@]}" >"$LOGS/serve.log" 2>&1 &
SERVE_PID=$!
PIDS+=("$SERVE_PID")
log "API node: ${IMG_ENTRYPOINT[*]} ${IMG_CMD[*]} on $BASE (pid $SERVE_PID, log $LOGS/serve.log)"
t=$SECONDS
until [ "$(curl -s -o "$LOGS/ready.json" -w '%{http_code}' "$BASE/ready" 2>/dev/null)" = 200 ]; do
    if ! kill -0 "$SERVE_PID" 2>/dev/null; then
        tail -n 40 "$LOGS/serve.log" >&2
        die "ragchat serve exited while starting"
    fi
    [ $((SECONDS - t)) -lt 300 ] || { tail -n 40 "$LOGS/serve.log" >&2; die "GET /ready not 200 after 300 s"; }
    sleep 1
done
READY_SECS=$((SECONDS - t))
log "GET /ready: 200 after $READY_SECS s: $(cat "$LOGS/ready.json")"
in_image RAGCHAT_BIND="127.0.0.1:$PORT" -- "${IMG_HEALTH[@]:1}" || die "the image's HEALTHCHECK (${IMG_HEALTH[*]:1}) failed"
log "HEALTHCHECK ${IMG_HEALTH[*]:1}: healthy"

# An admin, as `docker compose exec api-1 ragchat user create` would.
PW="$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')"
in_image "${API[@]}" -- "${IMG_ENTRYPOINT[@]}" user create admin --admin --password-stdin <<<"$PW" >"$LOGS/user.json" ||
    die "ragchat user create failed"
json() { python3 -c 'import json,sys; d=json.load(sys.stdin)
for k in sys.argv[1].split("."): d = d[int(k)] if isinstance(d, list) else d[k]
print(d)' "$1"; }
TOKEN="$(curl -sf -X POST "$BASE/api/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"username\": \"admin\", \"password\": \"$PW\"}" | json access_token)" || die "login failed"
AUTH=(-H "authorization: Bearer $TOKEN")
COLL="$(curl -sf -X POST "$BASE/api/v1/collections" "${AUTH[@]}" -H 'content-type: application/json' \
    -d '{"name": "docs", "public": true}' | json id)" || die "cannot create the collection docs"

# The worker role, from the same image, sharing the uploads directory.
WPORT="$(free_port)"
WORKER=("${COMMON[@]}" RAGCHAT_DATA_DIR=/tmp/ragchat-worker RAGCHAT_JOBS_HTTP_BIND="127.0.0.1:$WPORT")
image_cmd "${WORKER[@]}" -- "${IMG_ENTRYPOINT[@]}" worker
"${CMDLINE[@]}" >"$LOGS/worker.log" 2>&1 &
WORKER_PID=$!
PIDS+=("$WORKER_PID")
log "worker: ${IMG_ENTRYPOINT[*]} worker, probes on 127.0.0.1:$WPORT (pid $WORKER_PID, log $LOGS/worker.log)"
# Its health check as docker-compose.yml runs it (jobs.http_bind's /ready),
# once it is up (it reads no lexical index, so that is quick).
t=$SECONDS
until in_image "${WORKER[@]}" -- ragchat-healthcheck --worker 2>/dev/null; do
    kill -0 "$WORKER_PID" 2>/dev/null || { tail -n 40 "$LOGS/worker.log" >&2; die "ragchat worker exited"; }
    [ $((SECONDS - t)) -lt 120 ] || { tail -n 40 "$LOGS/worker.log" >&2; die "the worker's health check failed for 120 s"; }
    sleep 1
done
log "worker health check (ragchat-healthcheck --worker, GET /ready on jobs.http_bind): healthy after $((SECONDS - t)) s"

# The sample corpus, from the image, uploaded to the API node.
files=()
for f in "$ROOT"/opt/ragchat/corpus/*; do files+=(-F "file=@$f"); done
[ ${#files[@]} -gt 0 ] || die "no corpus in the image (/opt/ragchat/corpus)"
JOB="$(curl -sf -X POST "$BASE/api/v1/collections/$COLL/documents" "${AUTH[@]}" "${files[@]}" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("job", d)["id"])')" ||
    die "upload failed"
log "uploaded $((${#files[@]} / 2)) files from /opt/ragchat/corpus: job $JOB"
t=$SECONDS
while :; do
    curl -sf "$BASE/api/v1/jobs/$JOB" "${AUTH[@]}" >"$LOGS/job.json" || die "GET /jobs/$JOB failed"
    state="$(json state <"$LOGS/job.json")"
    case "$state" in
        succeeded) break ;;
        failed | dead | cancelled) cat "$LOGS/job.json" >&2; die "the ingest job is $state" ;;
    esac
    kill -0 "$WORKER_PID" 2>/dev/null || { tail -n 40 "$LOGS/worker.log" >&2; die "ragchat worker exited"; }
    [ $((SECONDS - t)) -lt 600 ] || { cat "$LOGS/job.json" >&2; die "the ingest job is still $state after 600 s"; }
    sleep 1
done
log "ingest job succeeded in $((SECONDS - t)) s (by the worker): $(python3 -c 'import json,sys; r=json.load(sys.stdin)["result"]; print("%s documents, %s added, %s chunks embedded" % (r.get("documents_total"), r.get("documents_added"), r.get("chunks_embedded")))' <"$LOGS/job.json")"

# Queries over HTTP; the node's lexical index follows the log within a poll.
Q="how+is+the+fused+score+computed"
query() { curl -sf "$BASE/api/v1/query?q=$Q&top_k=5&collections=docs&mode=$1" "${AUTH[@]}"; }
count() { python3 -c 'import json,sys; print(len(json.load(sys.stdin)["results"]))'; }
t=$SECONDS
while :; do
    query hybrid >"$LOGS/query-hybrid.json" || die "GET /api/v1/query failed"
    query lexical >"$LOGS/query-lexical.json" || die "GET /api/v1/query (lexical) failed"
    N="$(count <"$LOGS/query-hybrid.json")"
    NL="$(count <"$LOGS/query-lexical.json")"
    [ "$N" -gt 0 ] && [ "$NL" -gt 0 ] && break
    [ $((SECONDS - t)) -lt 30 ] || die "the query returned $N results ($NL lexical) after 30 s"
    sleep 1
done
log "GET /api/v1/query?q=$Q: $N results (hybrid), $NL (lexical); first: $(json results.0.source <"$LOGS/query-hybrid.json")"

# The README's way to load the corpus: `ragchat ingest corpus` in the image's
# working directory, from a data directory of its own, beside the running node.
in_image "${COMMON[@]}" RAGCHAT_DATA_DIR=/tmp/ragchat-cli -- "${IMG_ENTRYPOINT[@]}" \
    ingest corpus --collection docs --public >"$LOGS/ingest.log" 2>&1 ||
    { cat "$LOGS/ingest.log" >&2; die "ragchat ingest corpus failed"; }
log "ragchat ingest corpus: $(grep '^ingested' "$LOGS/ingest.log")"

# Stop both roles (SIGTERM, as docker stop does).
# Both are checked to be ragchat itself (chroot and env exec'd into it).
for pid in "$WORKER_PID" "$SERVE_PID"; do
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = ragchat ] || die "pid $pid is not ragchat"
done
kill -TERM "$WORKER_PID" "$SERVE_PID"
stopped=()
for pid in "$WORKER_PID" "$SERVE_PID"; do
    rc=0
    if timeout 30 tail --pid="$pid" -f /dev/null; then
        wait "$pid" || rc=$?
    else
        rc="still running 30 s after SIGTERM"
    fi
    stopped+=("$rc")
done
[ "${stopped[*]}" = "0 0" ] || die "after SIGTERM: worker exit ${stopped[0]}, serve exit ${stopped[1]}"
PIDS=()
log "serve and worker stopped cleanly on SIGTERM (exit 0)"
if in_image RAGCHAT_BIND="127.0.0.1:$PORT" -- "${IMG_HEALTH[@]:1}" 2>/dev/null; then
    die "the image's HEALTHCHECK passes with the server stopped"
fi
log "summary: build ${BUILD_SECS} s, image $IMAGE $SIZE, /ready after ${READY_SECS} s, query results $N (hybrid, top_k 5), worker ingest ok, redis $REDIS"
