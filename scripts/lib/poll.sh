# shellcheck shell=bash
# Sourced by the packaging checks (scripts/check-runtime-image.sh,
# scripts/check-packages.sh): free loopback ports and waiting for a condition
# with a deadline, never for a fixed time. The sourcing script defines die().

free_port() { # free_port SOCK_STREAM|SOCK_DGRAM -> a free port on 127.0.0.1
  /usr/bin/python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET,getattr(socket,sys.argv[1])); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "$1"
}

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...: poll until COMMAND succeeds
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@"; do
    ((SECONDS < deadline)) || die "timed out waiting for $what"
    sleep 0.1
  done
}

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; } # a TCP port on 127.0.0.1 accepts
