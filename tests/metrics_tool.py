"""Reads what authd exposes, with real parsers, for tests/tests/metrics.rs.

Usage:
  python tests/metrics_tool.py scrape URL
      GETs URL (a /metrics endpoint), parses it with
      prometheus_client.parser.text_string_to_metric_families (which refuses
      a malformed exposition) and prints one JSON object:
      {"families": {name: type}, "samples": [{"name", "labels", "value"}]}.
  python tests/metrics_tool.py alerts FILE
      Loads Prometheus alert rules (YAML) and prints, as JSON, every rule's
      name and the metric names its expression uses.
"""

import json
import re
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def scrape(url: str) -> None:
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode("utf-8")
    families = {}
    samples = []
    for family in text_string_to_metric_families(text):
        families[family.name] = family.type
        for sample in family.samples:
            samples.append(
                {"name": sample.name, "labels": sample.labels, "value": sample.value}
            )
    print(json.dumps({"families": families, "samples": samples}))


# PromQL words that are not metric names.
PROMQL = {
    "sum", "rate", "irate", "increase", "by", "without", "on", "ignoring",
    "max", "min", "avg", "count", "and", "or", "unless", "histogram_quantile",
    "le", "offset", "bool", "absent", "time", "delta", "deriv", "topk",
    "bottomk", "group_left", "group_right", "max_over_time", "min_over_time",
    "avg_over_time", "clamp_min", "clamp_max", "abs", "vector", "scalar",
}


def alerts(path: str) -> None:
    import yaml

    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    rules = []
    for group in doc["groups"]:
        for rule in group["rules"]:
            expr = rule["expr"]
            # Drop label matchers and strings, then keep identifiers that are
            # not PromQL keywords, label names in by (...) or durations.
            stripped = re.sub(r"\{[^}]*\}", "", expr)
            stripped = re.sub(r"\[[^\]]*\]", "", stripped)
            stripped = re.sub(r"\boffset\s+\w+", "", stripped)
            stripped = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", stripped)
            names = sorted(
                {
                    word
                    for word in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", stripped)
                    if word not in PROMQL
                }
            )
            rules.append(
                {
                    "alert": rule["alert"],
                    "for": rule.get("for"),
                    "severity": rule.get("labels", {}).get("severity"),
                    "summary": rule.get("annotations", {}).get("summary"),
                    "metrics": names,
                }
            )
    print(json.dumps(rules))


if __name__ == "__main__":
    {"scrape": scrape, "alerts": alerts}[sys.argv[1]](sys.argv[2])
