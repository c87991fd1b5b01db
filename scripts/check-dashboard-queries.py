#!/usr/bin/env python3
"""Checks the PromQL of every Grafana dashboard panel under deploy/monitoring/grafana.

Grafana's own variables ($__rate_interval, $__interval, $__range) are replaced by
durations, each query becomes a recording rule of a temporary rules file, and
`promtool check rules` parses them all: a query Prometheus would refuse fails here.
Also fails when a dashboard has no query, or a panel's datasource is not the
dashboard's `datasource` variable.
"""
import json
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
DASHBOARDS = ROOT / "deploy" / "monitoring" / "grafana"
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
}


def panels(items):
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


def queries(path):
    dashboard = json.loads(path.read_text())
    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            if target.get("datasource", {}).get("uid") != "${datasource}":
                sys.exit(f"{path.name}: panel {panel['title']!r} does not use the datasource variable")
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            yield panel["title"], expr


def main():
    rules = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        found = list(queries(path))
        if not found:
            sys.exit(f"{path.name}: no queries")
        for number, (title, expr) in enumerate(found):
            rules.append({"record": f"dashboard:{path.stem}:query{number}", "expr": expr,
                          "labels": {"panel": title}})
    if not rules:
        sys.exit(f"no dashboards in {DASHBOARDS}")
    # JSON is YAML: promtool reads it as a rules file.
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as file:
        json.dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}, file)
    try:
        result = subprocess.run(["promtool", "check", "rules", file.name],
                                capture_output=True, text=True)
    finally:
        pathlib.Path(file.name).unlink()
    if result.returncode != 0:
        sys.exit(f"dashboard queries do not parse:\n{result.stdout}{result.stderr}")
    print(f"{len(rules)} dashboard queries parse")


if __name__ == "__main__":
    main()
