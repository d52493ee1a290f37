#!/usr/bin/env bash
# Checks the Kubernetes manifests, offline:
#
# 1. schema: every resource validates strictly (unknown fields are errors)
#    against the Kubernetes 1.30 OpenAPI schemas, with kubernetes-validate
#    (PyPI; installed into a virtualenv under ~/.cache/ember on first use);
# 2. consistency: kustomization.yaml lists exactly the manifests here, every
#    Secret a pod reads is defined, every Service selects a workload's pods,
#    and every probe names a port its container declares.
#
# Usage: deploy/k8s/check.sh        (non-zero exit on any problem)
set -euo pipefail
cd "$(dirname "$0")"

k8s_version=1.30.0
venv="${EMBER_K8S_CHECK_VENV:-${HOME:-/tmp}/.cache/ember/k8s-check-venv}"
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
    echo "k8s-check: installing kubernetes-validate into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==1.37.0"
fi

manifests=()
for file in *.yaml; do
    [ "$file" = kustomization.yaml ] || manifests+=("$file")
done
"$venv/bin/kubernetes-validate" --strict --quiet -k "$k8s_version" "${manifests[@]}"
echo "k8s-check: ${#manifests[@]} manifests valid against Kubernetes $k8s_version (strict)"

"$venv/bin/python" - "${manifests[@]}" <<'PY'
import sys
import yaml

problems = []
files = sys.argv[1:]
kustomization = yaml.safe_load(open("kustomization.yaml"))
listed = set(kustomization.get("resources", []))
for missing in sorted(set(files) - listed):
    problems.append(f"kustomization.yaml does not list {missing}")
for extra in sorted(listed - set(files)):
    problems.append(f"kustomization.yaml lists {extra}, which does not exist")

docs = [(f, d) for f in files for d in yaml.safe_load_all(open(f)) if d]
secrets = {d["metadata"]["name"] for _, d in docs if d["kind"] == "Secret"}
workloads = [(f, d) for f, d in docs if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet")]

for f, d in workloads:
    name = d["metadata"]["name"]
    for c in d["spec"]["template"]["spec"]["containers"]:
        refs = [e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e]
        refs += [e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", [])
                 if "secretKeyRef" in e.get("valueFrom", {})]
        for ref in refs:
            if ref not in secrets:
                problems.append(f"{f}: {name}/{c['name']} reads Secret {ref}, which no manifest defines")
        ports = {p.get("name") for p in c.get("ports", [])} | {p["containerPort"] for p in c.get("ports", [])}
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            port = c.get(probe, {}).get("httpGet", {}).get("port")
            if port is not None and port not in ports:
                problems.append(f"{f}: {name}/{c['name']} {probe} uses port {port!r}, not declared")
    selector = d["spec"]["selector"]["matchLabels"]
    labels = d["spec"]["template"]["metadata"]["labels"]
    if any(labels.get(k) != v for k, v in selector.items()):
        problems.append(f"{f}: {name}'s selector does not match its pod labels")

for f, d in docs:
    if d["kind"] != "Service":
        continue
    selector = d["spec"].get("selector", {})
    if not any(all(w["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in selector.items())
               for _, w in workloads):
        problems.append(f"{f}: Service {d['metadata']['name']} selects no workload's pods")

for p in problems:
    print(f"k8s-check: {p}", file=sys.stderr)
if problems:
    sys.exit(1)
print(f"k8s-check: references consistent ({len(workloads)} workloads, {len(secrets)} secrets)")
PY
