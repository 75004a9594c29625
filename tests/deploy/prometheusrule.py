#!/usr/bin/env python3
"""Prints deploy/prometheus/rules.yml as the PrometheusRule of deploy/kubernetes/prometheus-operator.

  tests/deploy/prometheusrule.py > deploy/kubernetes/prometheus-operator/prometheusrule.yaml

Needs PyYAML (target/deploy-venv has it). `cargo test --test deploy` checks the two are equal.
"""

import os
import sys

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HEADER = """\
# deploy/prometheus/rules.yml as a PrometheusRule for the Prometheus Operator. Keep the two
# equal (tests/deploy checks that spec.groups is rules.yml's groups); regenerate with
#   tests/deploy/prometheusrule.py > deploy/kubernetes/prometheus-operator/prometheusrule.yaml
"""


class Dumper(yaml.SafeDumper):
    pass


def string(dumper, value):
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


Dumper.add_representer(str, string)

rules = yaml.safe_load(open(os.path.join(ROOT, "deploy", "prometheus", "rules.yml")))
document = {
    "apiVersion": "monitoring.coreos.com/v1",
    "kind": "PrometheusRule",
    "metadata": {"name": "graygate", "labels": {"app.kubernetes.io/name": "graygate"}},
    "spec": rules,
}
sys.stdout.write(HEADER + yaml.dump(document, Dumper=Dumper, sort_keys=False, width=200, allow_unicode=True))
