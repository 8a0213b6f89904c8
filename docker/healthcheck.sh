#!/bin/bash
# Container health probe: exit 0 if and only if Butler's GET /health answers 200
# (200 = running and connected to the broker; 503 = broker unreachable).
#
# The runtime image has no curl or wget (libcurl4 is a library only), and adding
# a client just for this would grow the image. bash is in every Debian image
# (Essential: yes) and its /dev/tcp redirection is a TCP client built into the
# shell, so this probe needs nothing else. Connecting to loopback is answered
# at once (accepted or refused); `read -t` bounds the wait for the answer, and
# the HEALTHCHECK --timeout bounds the whole probe. Plain HTTP only: if
# http.listen has no plain-HTTP port, add one on 127.0.0.1 for the probe.
#   BUTLER_HEALTH_HOST (default 127.0.0.1), BUTLER_HEALTH_PORT (default 8080)
set -u
host="${BUTLER_HEALTH_HOST:-127.0.0.1}"
port="${BUTLER_HEALTH_PORT:-8080}"
exec 3<>"/dev/tcp/$host/$port" || exit 1
printf 'GET /health HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n' "$host" >&3
IFS= read -r -t 5 status <&3 || { echo "butler-healthcheck: no answer from $host:$port" >&2; exit 1; }
status="${status%$'\r'}"
case "$status" in
  "HTTP/1."?" 200 "*) exit 0 ;;
  *) echo "butler-healthcheck: $status" >&2; exit 1 ;;
esac
