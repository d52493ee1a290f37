#!/usr/bin/env python3
"""Turns the records of `ember-tpch-bench --memory` runs (engines named
`ember-embedded@256MiB`, `ember-cluster-2@1GiB`, or without `@` for each
engine's default) into a Markdown report and a PNG chart beside it: per
engine kind, the time of every query under every limit with what it
spilled, then the peak resident memory of each process against its limit.

    memory_report.py --records ember.json --out results/memory-sf10-DATE.md
                     [--comparison comparison.json] [--title "..."]

Exits 1 when some query failed under some limit or its answer differs from
the reference's (answers.py's --comparison), after writing the report.
"""

import argparse
import json
import re

from report import machine

MIB = 1024 * 1024


def parse_size(label):
    """Bytes of a limit label such as 256MiB or 1GiB; None for the default."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]i?B?)?", label or "", re.IGNORECASE)
    if not match:
        return None
    number = float(match.group(1))
    unit = (match.group(2) or "").upper().rstrip("B").rstrip("I")
    return int(number * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[unit])


def split_engine(name):
    """(kind, limit label) of an engine name; the label is 'default' without @."""
    kind, _, label = name.partition("@")
    return kind, label or "default"


def mib(value):
    return f"{value / MIB:,.0f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--title", default="TPC-H under memory limits")
    parser.add_argument("--comparison", help="answers.py's --out")
    args = parser.parse_args()
    with open(args.records) as f:
        records = json.load(f)
    differing = {}
    if args.comparison:
        with open(args.comparison) as f:
            differing = json.load(f)

    kinds, labels = [], []
    for r in records:
        kind, label = split_engine(r["engine"])
        if kind not in kinds:
            kinds.append(kind)
        if label not in labels:
            labels.append(label)
    labels.sort(key=lambda l: parse_size(l) or float("inf"))
    by = {(r["engine"], r["query"]): r for r in records}
    queries = sorted({r["query"] for r in records})

    lines = [f"# {args.title}", "", f"- Machine: {machine()}", ""]
    lines.append("Seconds per query (one run) and, after `/`, MiB spilled to disk. `✗`: the query "
                 "failed (the reason is listed below); `≠`: its answer differs from DuckDB's.")
    problems = []
    totals = {}
    for kind in kinds:
        lines += ["", f"## {kind}", ""]
        lines.append("| query | " + " | ".join(labels) + " |")
        lines.append("| --- | " + " | ".join("---:" for _ in labels) + " |")
        for q in queries:
            cells = []
            for label in labels:
                engine = kind if label == "default" else f"{kind}@{label}"
                r = by.get((engine, q))
                if r is None:
                    cells.append("")
                    continue
                if r.get("error") or r.get("median") is None:
                    cells.append("✗")
                    problems.append(f"{engine} q{q}: {r.get('error', 'no time')}")
                    continue
                mark = " ≠" if str(q) in differing.get(engine, {}) else ""
                if mark:
                    problems.append(f"{engine} q{q}: {differing[engine][str(q)]}")
                spilled = r.get("spilled_bytes") or 0
                cells.append(f"{r['median']:.2f} / {mib(spilled)}{mark}")
                total = totals.setdefault((kind, label), [0.0, 0, True])
                total[0] += r["median"]
                total[1] += spilled
            lines.append(f"| Q{q} | " + " | ".join(cells) + " |")
        cells = []
        for label in labels:
            t = totals.get((kind, label))
            cells.append(f"**{t[0]:.2f} / {mib(t[1])}**" if t else "")
        lines.append("| total | " + " | ".join(cells) + " |")

    lines += ["", "## Peak resident memory", "",
              "The largest peak over the queries, per process, in MiB, against the limit each "
              "process was given (`--memory`: of each executor, or of the embedded process).", ""]
    lines.append("| engine | limit | process | peak RSS | over the limit |")
    lines.append("| --- | ---: | --- | ---: | ---: |")
    peaks = []
    for kind in kinds:
        for label in labels:
            engine = kind if label == "default" else f"{kind}@{label}"
            per_process = {}
            for q in queries:
                for name, peak in (by.get((engine, q)) or {}).get("peak_rss", []):
                    per_process[name] = max(per_process.get(name, 0), peak)
            limit = parse_size(label)
            for name, peak in sorted(per_process.items()):
                governed = name.startswith("executor") or kind == "ember-embedded"
                over = f"{mib(peak - limit)}" if limit and governed else ""
                lines.append(f"| {kind} | {label} | {name} | {mib(peak)} | {over} |")
                if governed:
                    peaks.append((kind, label, name, peak))

    if problems:
        lines += ["", "## Failures and differences", ""] + [f"- {p}" for p in problems]
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("memory_report.py: matplotlib is missing; no chart")
        return 1 if problems else 0
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / max(len(kinds), 1)
    for i, kind in enumerate(kinds):
        xs = [j + i * width for j in range(len(labels))]
        left.bar(xs, [totals.get((kind, l), [0])[0] for l in labels], width, label=kind)
        ys = [max((p for k, lab, _, p in peaks if k == kind and lab == l), default=0) / MIB
              for l in labels]
        right.plot(range(len(labels)), ys, marker="o", label=kind)
    left.set_xticks([j + width * (len(kinds) - 1) / 2 for j in range(len(labels))], labels)
    left.set_ylabel("seconds, 22 queries")
    left.set_title("Total time by memory limit")
    left.legend()
    limits = [parse_size(l) for l in labels]
    right.plot([j for j, l in enumerate(limits) if l], [l / MIB for l in limits if l], "k--",
               label="limit")
    right.set_xticks(range(len(labels)), labels)
    right.set_ylabel("MiB")
    right.set_title("Largest peak RSS of a limited process")
    right.legend()
    fig.tight_layout()
    fig.savefig(args.out[:-3] + ".png", dpi=110)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
