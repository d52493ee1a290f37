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
# The secure overlay (secure/) is checked the same way, rendered: its
# patches merged into the base manifests as kustomize's strategic merge does
# for the fields they use (containers, env, ports, volumes by name).
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

# check_dir DIR: validates and cross-checks the manifests in DIR, which
# lists them in its kustomization.yaml.
check_dir() {
    local dir="$1" manifests=()
    for file in "$dir"/*.yaml; do
        [ "$(basename "$file")" = kustomization.yaml ] || manifests+=("$file")
    done
    "$venv/bin/kubernetes-validate" --strict --quiet -k "$k8s_version" "${manifests[@]}"
    echo "k8s-check: ${#manifests[@]} manifests in $dir valid against Kubernetes $k8s_version (strict)"
    (cd "$dir" && "$venv/bin/python" - "${manifests[@]##*/}" <<'PY'
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
    volumes = d["spec"]["template"]["spec"].get("volumes", [])
    for v in volumes:
        ref = v.get("secret", {}).get("secretName")
        if ref is not None and ref not in secrets:
            problems.append(f"{f}: {name} mounts Secret {ref}, which no manifest defines")
    for c in d["spec"]["template"]["spec"]["containers"]:
        for mount in c.get("volumeMounts", []):
            if mount["name"] not in {v["name"] for v in volumes}:
                problems.append(f"{f}: {name}/{c['name']} mounts volume {mount['name']}, not declared")
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
    )
}

check_dir .

# The secure overlay, rendered into a temporary directory.
rendered="$(mktemp -d)"
trap 'rm -rf "$rendered"' EXIT
"$venv/bin/python" - secure "$rendered" <<'PY'
import os
import sys
import yaml

overlay, out = sys.argv[1], sys.argv[2]
kustomization = yaml.safe_load(open(os.path.join(overlay, "kustomization.yaml")))
MERGE_KEYS = {"containers": "name", "env": "name", "ports": "containerPort",
              "volumes": "name", "volumeMounts": "name"}

def merge(base, patch, key=None):
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for k, v in patch.items():
            merged[k] = merge(base[k], v, k) if k in base else v
        return merged
    if isinstance(base, list) and isinstance(patch, list) and key in MERGE_KEYS:
        field = MERGE_KEYS[key]
        merged = list(base)
        for item in patch:
            at = next((i for i, b in enumerate(merged) if b.get(field) == item.get(field)), None)
            if at is None:
                merged.append(item)
            else:
                merged[at] = merge(merged[at], item, None)
        return merged
    return patch

docs, files = [], {}
for resource in kustomization["resources"]:
    path = os.path.join(overlay, resource)
    if os.path.isdir(path):
        base = yaml.safe_load(open(os.path.join(path, "kustomization.yaml")))
        for name in base["resources"]:
            for d in yaml.safe_load_all(open(os.path.join(path, name))):
                if d:
                    docs.append((name, d))
    else:
        for d in yaml.safe_load_all(open(path)):
            if d:
                docs.append((resource, d))
for patch in kustomization.get("patches", []):
    p = yaml.safe_load(open(os.path.join(overlay, patch["path"])))
    targets = [i for i, (_, d) in enumerate(docs)
               if d["kind"] == p["kind"] and d["metadata"]["name"] == p["metadata"]["name"]]
    if len(targets) != 1:
        sys.exit(f"k8s-check: {patch['path']} patches {p['kind']} {p['metadata']['name']}, "
                 f"which the base has {len(targets)} times")
    name, d = docs[targets[0]]
    docs[targets[0]] = (name, merge(d, p))
for name, d in docs:
    files.setdefault(name, []).append(d)
for name, ds in files.items():
    with open(os.path.join(out, name), "w") as f:
        yaml.safe_dump_all(ds, f, sort_keys=False)
with open(os.path.join(out, "kustomization.yaml"), "w") as f:
    yaml.safe_dump({"resources": sorted(files)}, f)
PY
check_dir "$rendered"
