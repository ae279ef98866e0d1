#!/bin/bash
# The image's HEALTHCHECK (installed as /usr/local/bin/ragchat-healthcheck).
#
# API node (`ragchat serve`, the default command): healthy when GET /ready on
# the port of $RAGCHAT_BIND answers 200. The slim image has no curl, so this
# speaks HTTP/1.0 over bash's /dev/tcp.
# Worker (`ragchat worker`): GET /ready on the port of $RAGCHAT_JOBS_HTTP_BIND
# (jobs.http_bind, its probes) when set; otherwise, with no port to ask,
# healthy while its process runs.
#
#   ragchat-healthcheck            decide by the container's main process
#   ragchat-healthcheck --http     an API node: GET /ready on $RAGCHAT_BIND
#   ragchat-healthcheck --worker   a worker
set -u

mode="${1:-auto}"
if [ "$mode" = auto ]; then
    mode=--http
    # The main process (pid 1 in a container); its argv tells the role.
    if [ -r /proc/1/cmdline ] && tr '\0' '\n' </proc/1/cmdline | grep -qx worker; then
        mode=--worker
    fi
fi

bind="${RAGCHAT_BIND:-0.0.0.0:8080}"
case "$mode" in
--worker)
    if [ -z "${RAGCHAT_JOBS_HTTP_BIND:-}" ]; then
        tr '\0' '\n' </proc/1/cmdline 2>/dev/null | grep -q ragchat
        exit $?
    fi
    bind="$RAGCHAT_JOBS_HTTP_BIND"
    ;;
--http) ;;
*)
    echo "usage: ragchat-healthcheck [--http|--worker]" >&2
    exit 2
    ;;
esac

port="${bind##*:}"
host=127.0.0.1
case "$bind" in \[*) host=::1 ;; esac # [::]:8080 binds IPv6

exec 3<>"/dev/tcp/$host/$port" || exit 1
printf 'GET /ready HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3
IFS= read -r -t 5 status <&3 || exit 1
exec 3<&-
case "$status" in
"HTTP/1."?" 200 "*) exit 0 ;;
*)
    echo "GET /ready: ${status%$'\r'}" >&2
    exit 1
    ;;
esac
