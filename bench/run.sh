#!/bin/sh
# One command for the whole benchmark: build a release Butler and the C load tools,
# then run every scenario against its ceiling and print one table (bench/bench.py).
# Usage: bench/run.sh [--quick]        (about 2 minutes; --quick less)
# Env: BENCH_ONLY=task,http,udp,users,routes,startup  BENCH_NO_BUILD=1  BENCH_BUTLER=path  BENCH_KEEP=1
# Needs: cmake, gcc, wrk, mosquitto, libmosquitto-dev, libcurl4-openssl-dev,
# libcivetweb-dev, python3 (the QRS simulator). Uses free loopback ports.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUTLER_BENCH_BUILD:-$root/build-bench}
tools=$build/bench-tools
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then  # BENCH_NO_BUILD=1: reuse $build/butler as it is
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$build" -j"$(nproc)" --target butler >/dev/null
fi
mkdir -p "$tools"
cflags="-O2 -Wall -Wextra -std=gnu11"
gcc $cflags -o "$tools/mqtt_load" "$root/bench/mqtt_load.c" -lmosquitto -lpthread
gcc $cflags -o "$tools/qrs_ceiling" "$root/bench/qrs_ceiling.c" -lcurl -lpthread
gcc $cflags -o "$tools/udp_load" "$root/bench/udp_load.c"
gcc $cflags -o "$tools/http_sink" "$root/bench/http_sink.c" -lcivetweb
gcc $cflags -o "$tools/civetweb_ceiling" "$root/bench/civetweb_ceiling.c" -lcivetweb
# Links Butler's own parser and active-user state from the release build (static library).
gcc $cflags -I"$root" -o "$tools/proxy_path" "$root/bench/proxy_path.c" "$build/libbutler_core.a" \
    -lcjson -lm
exec /usr/bin/python3 "$root/bench/bench.py" "$build" "$tools" "$@"
