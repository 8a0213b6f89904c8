#!/usr/bin/env bash
# Installs what is needed, builds Butler three ways and runs every test:
#   build/       normal build: unit and integration tests, then a 60 s soak (bench/soak)
#   build-asan/  AddressSanitizer + UndefinedBehaviorSanitizer: the whole suite again
#   valgrind     the integration suites that start Butler and fit CI time, butler under memcheck
#   build-fuzz/  clang + libFuzzer: every fuzz target for a bounded time on its seed corpus
# and checks the packaging: docker/Dockerfile (dockerfilelint), deploy/systemd/butler.service
# (systemd-analyze), the runtime image's package list (a debootstrap chroot, ~40 s), and
# what users install (scripts/check-packages.sh: the image and compose stack with podman,
# the Debian package in a clean chroot, lintian).
# Source rules first (clang-format, banned calls: scripts/check-source.sh).
# Exits non-zero if anything fails. Target: under 25 minutes on 2 cores, including the install.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --test
jobs=$(nproc)
status=0
# Each step's wall-clock time, printed as it ends, so CI output shows where the time goes.
stage_start=$SECONDS
stage() {
  echo "test.sh: [$((SECONDS - stage_start)) s] $1"
  stage_start=$SECONDS
}
stage "install"

bash scripts/check-source.sh || status=1
# deploy/grafana: promtool check rules + test rules, metric names the code registers.
bash scripts/check-grafana.sh || status=1
stage "source and grafana checks"

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
# Four tests at once on two cores: the integration tests spend most of their time waiting
# (a quiet run used 140 s of CPU in 467 s at -j2), and none asserts a timing.
stage "normal build"
(cd build && ctest --output-on-failure -j4 -E '^fuzz/') || status=1
stage "normal ctest"

# Short soak (~70 s): task starts at a steady 300/s for 60 s with a 10 s de-duplication
# window; fails on an RssAnon trend beyond noise over the second half, a spool file past
# 4 MB (a compacting spool holds ~0.7 MB of live records here) or an unanswered request.
# The rules are trends and sizes, never timings (bench/soak explains the thresholds). Its
# own step rather than a ctest: it runs for a fixed minute and its figures (CPU per start,
# latency) mean most when it does not share the two cores with the parallel tests.
bench/soak --seconds 60 --rate 300 --window 10 --sample 2 --check --max-spool-mb 4 \
  --butler build/butler || status=1
stage "soak"

# Packaging (no Docker engine needed). Each check skips, saying why, when what it
# needs is out of reach (npm registry, Debian mirror, root) and fails otherwise.
bash scripts/lint-docker.sh || status=1
bash scripts/verify-systemd.sh build || status=1
# One debootstrap per run, shared by the two checks below (scripts/lib/debian-rootfs.sh).
rm -f build/debian-rootfs/bookworm-minbase.tar
bash scripts/check-runtime-image.sh build || status=1
# The image built and run with podman, the compose stack, the .deb installed in a clean chroot.
bash scripts/check-packages.sh build || status=1
stage "packaging"

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DBUTLER_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
stage "ASan build"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --output-on-failure -j4 -E '^(fuzz|simulator)/') || status=1
stage "ASan ctest"

# The integration suites that start Butler, again under valgrind: any memory error or definite
# leak makes butler exit 99 and the test fail. Their times under valgrind are in BENCHMARKS.md
# ("Valgrind"). Not here, and why: test_app (about 7.5 min under valgrind on its own, past the CI
# budget); test_events, test_kv_schedules, test_notifications (wall-clock budgets in Butler or in
# the test, e.g. an enrichment answered within 7 s, that valgrind's slowdown breaks: they fail
# there for time, not memory); test_monitors (for time; its stale-retained-version defect seen
# under valgrind is fixed, see BENCHMARKS.md). All of them run under ASan above. Serial on
# purpose: two valgrind shards side by side made timing-bound tests of test_task_start and
# test_http_api fail on a loaded machine. Of the suites measured later: test_refused_answers,
# test_held_messages and test_exactly_once_starts are here (the spool and replay paths);
# test_exactly_once_files_apps, test_backpressure, test_influxdb and test_file_ops (its 2 GiB
# sparse copy; dropped when CI passed 25 minutes) pass under valgrind but are left out for time; test_alerts, test_http_security and test_users fail there for time.
(cd tests/integration && BUTLER_VALGRIND=1 BUTLER_BINARY="$PWD/../../build/butler" \
  /usr/bin/python3 -m pytest -q -p no:cacheprovider test_task_start.py test_crash.py \
  test_mqtt_link.py test_http_api.py test_newrelic.py test_node_red.py \
  test_refused_answers.py test_held_messages.py test_exactly_once_starts.py) \
  || status=1
stage "valgrind integration"

CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DBUTLER_FUZZ=ON -DBUTLER_SANITIZE=ON \
  -DBUTLER_FUZZ_SECONDS=8 >/dev/null
cmake --build build-fuzz -j"$jobs"
stage "fuzz build"
(cd build-fuzz && ctest --output-on-failure -j2 -R '^fuzz/') || status=1
stage "fuzz"

if ((status == 0)); then echo "all test suites passed"; else echo "SOME TESTS FAILED"; fi
exit $status
