#!/usr/bin/env bash
# deploy/grafana/: the Prometheus alert rules load (`promtool check rules`) and
# fire as their tests say (`promtool test rules`), and every butler_* metric the
# rules and the dashboard read is one the code registers (a renamed metric
# would leave a panel or an alert silently empty).
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
if command -v promtool >/dev/null; then
  promtool check rules deploy/grafana/butler-alerts.yml || status=1
  (cd deploy/grafana && promtool test rules butler-alerts.test.yml) || status=1
else
  echo "check-grafana: promtool not found (Debian package prometheus)" >&2
  status=1
fi
python3 -c 'import json,sys; json.load(open(sys.argv[1]))' deploy/grafana/butler-dashboard.json ||
  status=1
while read -r name; do
  [[ "$name" == butler_overview ]] && continue
  if ! grep -rqF "\"$name\"" bridge topics; then
    echo "check-grafana: $name is not a metric Butler registers" >&2
    status=1
  fi
done < <(grep -ohE 'butler_[a-z_]+' deploy/grafana/butler-alerts.yml \
  deploy/grafana/butler-dashboard.json | sort -u)
[[ $status == 0 ]] && echo "grafana: rules load and pass their tests, every metric exists"
exit $status
