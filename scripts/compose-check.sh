#!/usr/bin/env bash
# Validate docker-compose.yml with `docker-compose config` (Debian's
# docker-compose package, installed with apt-get when missing), giving dummy
# values to the secrets it requires; also checks that it refuses to start
# without them. No Docker daemon is needed. Exits nonzero on any error.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v docker-compose >/dev/null; then
    command -v apt-get >/dev/null || {
        echo "compose-check: install docker-compose (Debian/Ubuntu: apt-get install docker-compose)" >&2
        exit 1
    }
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    echo "compose-check: installing docker-compose"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
fi

out="$(mktemp)"
trap 'rm -f "$out"' EXIT
# compose [VAR=value|-u VAR]... ARGS: docker-compose on this file. No daemon
# is contacted by `config`; the user's compose settings are kept out.
compose() {
    local unset=(-u DOCKER_HOST -u COMPOSE_FILE -u COMPOSE_PROJECT_NAME) set=()
    while [ $# -gt 0 ]; do
        case "$1" in
            -u) unset+=(-u "$2"); shift 2 ;;
            *=*) set+=("$1"); shift ;;
            *) break ;;
        esac
    done
    # env applies -u before the assignments: unset only names not set here.
    env "${unset[@]}" "${set[@]}" \
        docker-compose --project-directory . -f docker-compose.yml "$@"
}
# docker-compose's own interpreter has PyYAML.
py="$(sed -n '1s/^#! *//p' "$(command -v docker-compose)" | cut -d' ' -f1)"
[ -x "$py" ] || py=python3

secrets=(RAGCHAT_JWT_SECRET=dummy-jwt-secret-for-compose-check-0123456789 POSTGRES_PASSWORD=dummypassword)
if ! compose "${secrets[@]}" config >"$out" 2>&1; then
    echo "compose-check: docker-compose config failed:" >&2
    cat "$out" >&2
    exit 1
fi
services="$(compose "${secrets[@]}" config --services | sort | tr '\n' ' ')"
for s in postgres redis qdrant api-1 api-2 worker; do
    case " $services " in *" $s "*) ;; *) echo "compose-check: service $s missing (have: $services)" >&2; exit 1 ;; esac
done
# Every service has a health check.
"$py" - "$out" <<'EOF'
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
bad = [n for n, s in doc["services"].items() if "test" not in (s.get("healthcheck") or {})]
if bad:
    sys.exit("compose-check: no healthcheck on: " + ", ".join(bad))
EOF

# Without the secrets it must refuse.
for missing in RAGCHAT_JWT_SECRET POSTGRES_PASSWORD; do
    others=()
    for kv in "${secrets[@]}"; do [ "${kv%%=*}" = "$missing" ] || others+=("$kv"); done
    if compose -u "$missing" "${others[@]}" config >"$out" 2>&1; then
        echo "compose-check: docker-compose config accepted the file without $missing" >&2
        exit 1
    fi
    grep -q "set $missing" "$out" || {
        echo "compose-check: without $missing, docker-compose config failed for another reason:" >&2
        cat "$out" >&2
        exit 1
    }
done
echo "compose-check: docker-compose.yml is valid (services: $services)"
