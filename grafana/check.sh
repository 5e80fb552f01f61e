#!/usr/bin/env bash
# Check everything under grafana/ (needs promtool + prometheus: Debian's
# `prometheus` package, and python3). Run from anywhere:
#   grafana/check.sh
# Steps: promtool check/test rules, dashboard JSON, then every PromQL
# expression (dashboard, Grafana alert, Prometheus rules) as an instant query
# against a throwaway Prometheus on 127.0.0.1:${VALERIX_CHECK_PROM_PORT:-19090}
# that also loads the rule file. The Prometheus is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")"
port="${VALERIX_CHECK_PROM_PORT:-19090}"

promtool check rules prometheus/valerix-rules.yml
promtool test rules prometheus/valerix-rules.test.yml
python3 -m json.tool dashboards/valerix.json > /dev/null
echo "dashboards/valerix.json: valid JSON"

# The SLA condition is written three times (Prometheus rule, Grafana alert,
# dashboard panel): they must stay the same expression.
python3 check-promql.py | python3 -c '
import json, sys
exprs = {}
for line in sys.stdin:
    item = json.loads(line)
    exprs[item["source"]] = item["expr"]
rule = exprs["grafana/prometheus/valerix-rules.yml#OrderServiceSLABreach"]
assert rule.endswith(" > 1"), rule
base = rule[: -len(" > 1")]
grafana = exprs["grafana/provisioning/alerting/valerix-sla.yml#valerix-sla-breach/A"]
panel = [e for s, e in exprs.items() if s.startswith("grafana/dashboards/valerix.json#panel=3:")][0]
for name, expr in (("grafana alert A", grafana), ("dashboard panel 3", panel)):
    assert expr == base, f"{name} differs from the Prometheus rule:\n  {expr}\n  {base}"
print("SLA expression identical in the Prometheus rule, the Grafana alert and the dashboard")
'

# Every datasource uid the dashboard and the alert use is provisioned.
python3 -c '
import json, re
provisioned = set(re.findall(r"^\s*uid:\s*(\S+)", open("provisioning/datasources/valerix.yml").read(), re.M))
builtin = {"-- Grafana --", "__expr__"}
used = set()
def walk(node):
    if isinstance(node, dict):
        ds = node.get("datasource")
        if isinstance(ds, dict) and "uid" in ds:
            used.add(ds["uid"])
        for value in node.values():
            walk(value)
    elif isinstance(node, list):
        for value in node:
            walk(value)
walk(json.load(open("dashboards/valerix.json")))
alert = open("provisioning/alerting/valerix-sla.yml").read()
used |= set(re.findall(r"^\s*(?:datasourceUid|uid):\s*(\S+)", alert, re.M)) - {"valerix-sla-breach"}
missing = used - provisioned - builtin
assert not missing, f"datasource uids used but not provisioned: {sorted(missing)}"
print("datasource uids used:", ", ".join(sorted(used)), "- all provisioned or built in")
'

tmp="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

cp prometheus/valerix-rules.yml "$tmp/"
cat > "$tmp/prometheus.yml" <<CONF
global:
  scrape_interval: 5s
  evaluation_interval: 5s
rule_files:
  - valerix-rules.yml
scrape_configs: []
CONF
promtool check config "$tmp/prometheus.yml" > /dev/null
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/data" \
  --web.listen-address="127.0.0.1:$port" > "$tmp/prometheus.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$port/-/ready" > /dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$tmp/prometheus.log" >&2; exit 1; }
  sleep 0.1
done
python3 check-promql.py --query "http://127.0.0.1:$port" > /dev/null
