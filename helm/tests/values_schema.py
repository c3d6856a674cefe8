#!/usr/bin/env python3
"""Writes helm/<service>/values.schema.json from each service chart's values.yaml.

Helm validates every install, upgrade, lint and template against that schema,
so a misspelt value (`replicaCout: 3`, `ingress.enable: true`) is an error
instead of being ignored. Structural maps refuse unknown keys; the free-form
ones (FREE below: the service's TOML `config`, annotations, labels, resources,
affinity, …) take anything. Run it after changing a values.yaml:

    python3 helm/tests/values_schema.py

(`helm lint --strict` in helm/tests fails on a values.yaml the schema does not
describe, so a forgotten run is caught.) Needs PyYAML (python3-yaml).
"""

import json
import pathlib

import yaml

CHARTS = ["query-api", "ingest-gateway", "realtime-hub", "stream-processor", "aggregator-cron"]
# Maps whose keys are the user's (free-form), by dotted path.
FREE = {
    "config", "secret.env", "podAnnotations", "podLabels", "nodeSelector", "affinity", "resources",
    "strategy", "service.annotations", "ingress.annotations", "monitoring.serviceMonitor.labels",
    "monitoring.podMonitor.labels", "autoscaling.behavior", "migrations.resources",
    "dashboards.labels", "dashboards.annotations",
}
# Lists and their item schema.
LISTS = {
    "imagePullSecrets": {"type": "object"},
    "tolerations": {"type": "object"},
    "topologySpreadConstraints": {"type": "object"},
    "env": {"type": "object", "required": ["name"]},
    "args": {"type": "string"},
    "extraVolumes": {"type": "object", "required": ["name"]},
    "extraVolumeMounts": {"type": "object", "required": ["name", "mountPath"]},
    "publicPaths": {"type": "string", "pattern": "^/"},
    "ingress.hosts": {"type": "string"},
    "ingress.tls": {"type": "object"},
    "ingress.paths": {
        "type": "object",
        "required": ["path"],
        "additionalProperties": False,
        "properties": {
            "path": {"type": "string", "pattern": "^/"},
            "pathType": {"enum": ["Prefix", "Exact", "ImplementationSpecific"]},
        },
    },
}
# Optional keys a chart's values.yaml does not set.
EXTRA = {
    "replicaRules": {
        "exactlyOne": {"type": "boolean"},
        "maxReplicas": {"type": "integer", "minimum": 1},
    },
    "podDisruptionBudget": {"minAvailable": {"type": ["integer", "string"]}},
}
PORT = {"type": "integer", "minimum": 0, "maximum": 65535}
# A file name inside tls.mountPath (a key of the Secret/ConfigMap), not a path.
FILE_NAME = {"type": "string", "pattern": "^([^/.][^/]*)?$"}
SECONDS = {"type": "integer", "minimum": 0}


def schema(value, path):
    if path in FREE:
        return {"type": "object"}
    if path in LISTS:
        return {"type": "array", "items": LISTS[path]}
    if path.startswith("ports."):
        return PORT
    if path.startswith("tls.caFiles."):
        return FILE_NAME
    if path == "tls.mountPath":
        return {"type": "string", "pattern": "^/"}
    if path.startswith("lifecycle.") or path == "probes.dependencyTimeoutSeconds":
        return SECONDS
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer", "minimum": 0}
    if isinstance(value, str):
        return {"type": "string"}
    if isinstance(value, list):
        raise SystemExit(f"list {path}: add it to LISTS")
    if isinstance(value, dict):
        props = {k: schema(v, f"{path}.{k}" if path else k) for k, v in value.items()}
        props.update(EXTRA.get(path, {}))
        if path == "":
            # Helm's own: the library dependency's values and globals.
            props.update({"analytics-common": {"type": "object"}, "global": {"type": "object"}})
        return {"type": "object", "additionalProperties": False, "properties": props}
    raise SystemExit(f"{path}: unexpected {value!r}")


root = pathlib.Path(__file__).resolve().parent.parent
for chart in CHARTS:
    values = yaml.safe_load((root / chart / "values.yaml").read_text())
    out = schema(values, "")
    out = {"$schema": "https://json-schema.org/draft-07/schema#", "title": f"{chart} chart values", **out}
    (root / chart / "values.schema.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote helm/{chart}/values.schema.json")
