#!/usr/bin/env python3
"""List (and optionally validate) every PromQL expression under grafana/.

Sources:
  grafana/dashboards/*.json            panels[].targets[].expr (rows, nested or
                                       collapsed, are walked recursively)
  grafana/provisioning/alerting/*.yml  groups[].rules[].data[].model.expr
  grafana/prometheus/*.yml             groups[].rules[].expr (*.test.yml skipped)

Output: one JSON object per line on stdout, {"source": ..., "expr": ...}.
Grafana's built-in variables are replaced by fixed values so that every
expression can be sent as-is to Prometheus' /api/v1/query:
  $__rate_interval -> 1m, $__interval -> 15s, $__range -> 1h (and friends).
Any other $variable is an error (it could not be checked).

  python3 grafana/check-promql.py                 # print the expressions
  python3 grafana/check-promql.py --query http://127.0.0.1:19090
      # also run each one as an instant query; exit 1 if any is rejected

Exit status: 0 ok, 1 some expression rejected by --query, 2 a file could
not be read or holds no expression.

Standard library only. YAML is read with PyYAML when it is installed, else
with a small built-in reader for the subset these files use (block mappings
and sequences; plain, multi-line, quoted and block scalars; JSON-style flow
collections); --no-pyyaml forces the built-in reader.
"""

import argparse
import glob
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

GRAFANA_VARIABLES = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}
VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")


class Failure(Exception):
    pass


def substitute(expr, source):
    def repl(m):
        name = m.group(1) or m.group(2)
        if name not in GRAFANA_VARIABLES:
            raise Failure(f"{source}: unknown variable ${name} in {expr!r}")
        return GRAFANA_VARIABLES[name]

    return VARIABLE.sub(repl, expr)


# ---------------------------------------------------------------- dashboards


def dashboard_exprs(path, rel):
    with open(path, encoding="utf-8") as f:
        dashboard = json.load(f)
    out = []

    def walk(panels):
        for panel in panels or []:
            for target in panel.get("targets") or []:
                expr = (target.get("expr") or "").strip()
                if expr:
                    source = f"{rel}#panel={panel.get('id')}:{panel.get('title', '')}/{target.get('refId', '')}"
                    out.append((source, expr))
            # rows keep their children in "panels" when collapsed
            walk(panel.get("panels"))

    walk(dashboard.get("panels"))
    # very old dashboards: rows[].panels[]
    for row in dashboard.get("rows") or []:
        walk(row.get("panels"))
    return out


# ---------------------------------------------------------------- YAML


def yaml_exprs(doc, rel):
    out = []
    for group in (doc or {}).get("groups") or []:
        for rule in group.get("rules") or []:
            if "expr" in rule:  # Prometheus rule
                name = rule.get("alert") or rule.get("record") or ""
                out.append((f"{rel}#{name}", str(rule["expr"]).strip()))
            for query in rule.get("data") or []:  # Grafana alert rule
                model = query.get("model") or {}
                if "expr" in model:
                    source = f"{rel}#{rule.get('uid', '')}/{query.get('refId', '')}"
                    out.append((source, str(model["expr"]).strip()))
    return out


class MiniYaml:
    """The YAML subset of rule and provisioning files: block mappings and
    sequences; plain (also multi-line), quoted and block (| >) scalars;
    comments; flow collections only as JSON ([], {}, [1, 2]). Scalars stay
    strings (only expressions, names and ids are read from the result)."""

    KEY = re.compile(r"^(?P<key>[^\s#'\"\[\]{}:][^:#]*?|\"[^\"]*\"|'[^']*'):(?:\s+(?P<value>.*))?$")

    def __init__(self, text):
        self.lines = text.splitlines()

    def load(self):
        i = self._skip(0)
        if i >= len(self.lines):
            return None
        value, i = self._node(i, self._col(i))
        i = self._skip(i)
        if i < len(self.lines):
            raise Failure(f"line {i + 1}: unexpected indentation: {self.lines[i]!r}")
        return value

    def _col(self, i):
        return len(self.lines[i]) - len(self.lines[i].lstrip(" "))

    def _skip(self, i):
        while i < len(self.lines) and (not self.lines[i].strip() or self.lines[i].lstrip().startswith("#")
                                       or self.lines[i].strip() == "---"):
            i += 1
        return i

    def _node(self, i, col):
        text = self.lines[i].strip()
        if text == "-" or text.startswith("- "):
            return self._sequence(i, col)
        if self.KEY.match(text):
            return self._mapping(i, col)
        return self._scalar(text, i, col - 1)

    def _sequence(self, i, col):
        items = []
        while i < len(self.lines) and self._col(i) == col and (self.lines[i].strip() == "-"
                                                               or self.lines[i].strip().startswith("- ")):
            rest = self.lines[i].strip()[1:].lstrip()
            if not rest or rest.startswith("#"):
                j = self._skip(i + 1)
                value, i = (self._node(j, self._col(j)) if j < len(self.lines) and self._col(j) > col
                            else (None, i + 1))
            else:
                # "- key: v" is a mapping whose first line starts after "- "
                inner = col + len(self.lines[i].strip()) - len(rest)
                self.lines[i] = " " * inner + rest
                value, i = self._node(i, inner)
            items.append(value)
            i = self._skip(i)
        return items, i

    def _mapping(self, i, col):
        result = {}
        while i < len(self.lines) and self._col(i) == col:
            m = self.KEY.match(self.lines[i].strip())
            if not m:
                break
            key = m.group("key").strip()
            if key[:1] in ("'", '"'):
                key = key[1:-1]
            value = (m.group("value") or "").strip()
            if not value or value.startswith("#"):
                j = self._skip(i + 1)
                if j < len(self.lines) and (self._col(j) > col or (
                        self._col(j) == col and self.lines[j].strip().startswith("-"))):
                    result[key], i = self._node(j, self._col(j))
                else:
                    result[key], i = None, i + 1
            else:
                result[key], i = self._scalar(value, i, col)
            i = self._skip(i)
        return result, i

    def _scalar(self, value, i, col):
        """Scalar starting with `value` on line i, owned by a key at column col."""
        if value[:1] in ("|", ">"):
            folded = value[0] == ">"
            block = []
            i += 1
            while i < len(self.lines) and (not self.lines[i].strip() or self._col(i) > col):
                block.append(self.lines[i].strip())
                i += 1
            text = (" " if folded else "\n").join(b for b in block if b)
            return text + ("" if value[1:2] == "-" else "\n"), i
        if value[:1] == '"':
            end = value.rfind('"')
            return json.loads(value[: end + 1]), i + 1
        if value[:1] == "'":
            end = value.rfind("'")
            return value[1:end].replace("''", "'"), i + 1
        if value[:1] in ("[", "{"):
            return json.loads(self._plain(value)), i + 1
        parts = [self._plain(value)]
        i += 1
        while i < len(self.lines) and self.lines[i].strip() and self._col(i) > col \
                and not self.lines[i].lstrip().startswith("#"):
            parts.append(self._plain(self.lines[i]))
            i += 1
        return " ".join(p for p in parts if p), i

    @staticmethod
    def _plain(value):
        return re.split(r"\s+#", value, maxsplit=1)[0].strip()


def load_yaml(path, yaml):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if yaml is not None:
        return yaml.safe_load(text)
    return MiniYaml(text).load()


# ---------------------------------------------------------------- main


def collect(use_pyyaml):
    yaml = None
    if use_pyyaml:
        try:
            import yaml  # noqa: F811
        except ImportError:
            yaml = None
    files = (
        [("json", p) for p in sorted(glob.glob(os.path.join(HERE, "dashboards", "*.json")))]
        + [("yaml", p) for p in sorted(glob.glob(os.path.join(HERE, "provisioning", "alerting", "*.yml")))]
        + [("yaml", p) for p in sorted(glob.glob(os.path.join(HERE, "prometheus", "*.yml")))
           if not p.endswith(".test.yml")]
    )
    if not files:
        raise Failure(f"no dashboard, alert or rule files under {HERE}")
    result = []
    for kind, path in files:
        rel = os.path.relpath(path, REPO)
        if kind == "json":
            found = dashboard_exprs(path, rel)
        else:
            found = yaml_exprs(load_yaml(path, yaml), rel)
        if not found:
            raise Failure(f"{rel}: no PromQL expression found")
        for source, expr in found:
            if not expr:
                raise Failure(f"{source}: empty expression")
            result.append({"source": source, "expr": substitute(expr, source)})
    return result


def query(base, expr):
    url = base.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as e:  # 400 = bad_data (parse error)
        body = json.load(e)
    if body.get("status") != "success":
        return f"{body.get('errorType')}: {body.get('error')}"
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--query", metavar="URL",
                        help="Prometheus base URL; run every expression as an instant query")
    parser.add_argument("--no-pyyaml", action="store_true",
                        help="read YAML with the built-in reader even if PyYAML is installed")
    args = parser.parse_args()
    try:
        exprs = collect(use_pyyaml=not args.no_pyyaml)
    except (Failure, OSError, ValueError) as e:
        print(f"check-promql: {e}", file=sys.stderr)
        return 2
    for item in exprs:
        print(json.dumps(item))
    if not args.query:
        return 0
    failed = 0
    for item in exprs:
        error = query(args.query, item["expr"])
        if error:
            failed += 1
            print(f"FAIL {item['source']}: {error}\n     {item['expr']}", file=sys.stderr)
    print(f"check-promql: {len(exprs) - failed}/{len(exprs)} expressions accepted by {args.query}",
          file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
