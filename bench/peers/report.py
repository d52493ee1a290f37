#!/usr/bin/env python3
"""Turns the records of `ember-tpch-bench` and `tpch_peers.py` (or of
`ember-tpcds-bench` and `tpcds_peers.py`, with --queries 99) into a
Markdown table (query x engine, with ratios to Ember embedded, totals and
geometric means) and a PNG bar chart beside it.

    report.py --records ember.json peers.json --out results/tpch-sf1-DATE.md
              [--title "..."] [--reference duckdb] [--comparison comparison.json]

A result that differs from the reference engine's (DuckDB by default) is
marked with `≠` in the table: as answers.py found it (rows compared with a
numeric tolerance) when --comparison names its output, else by digest
(rows sorted, numbers rounded to 2 decimals).
"""

import argparse
import json
import math
import os
import platform
import subprocess

BASELINE = "ember-embedded"


def machine():
    cores = os.cpu_count()
    memory = ""
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
            memory = f"{kib / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    model = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next((l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("Model name")), "")
    except OSError:
        pass
    return f"{cores} cores ({model}), {memory} memory, {platform.system()} {platform.release()}"


def geomean(values):
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", nargs="+", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--title", default="TPC-H")
    parser.add_argument("--reference", default="duckdb")
    parser.add_argument("--comparison", help="answers.py's --out")
    parser.add_argument("--queries", type=int, default=22, help="how many queries the suite has")
    args = parser.parse_args()
    comparison = None
    if args.comparison:
        with open(args.comparison) as f:
            comparison = json.load(f)

    records = []
    for path in args.records:
        with open(path) as f:
            records.extend(json.load(f))
    engines = []
    for r in records:
        if r["engine"] not in engines:
            engines.append(r["engine"])
    versions = {r["engine"]: r.get("version", "") for r in records if r.get("version")}
    by = {(r["engine"], r.get("query")): r for r in records}
    reference = {q: by.get((args.reference, q), {}).get("digest") for q in range(1, args.queries + 1)}

    lines = [f"# {args.title}", "", f"- Machine: {machine()}", "- Engines: " + ", ".join(
        f"{e} {versions.get(e, '')}".strip() for e in engines), ""]
    lines.append("Median seconds per query (ratio to Ember embedded). `—`: the engine cannot run the "
                 f"query; `≠`: its result differs from {args.reference}'s.")
    lines.append("")
    lines.append("| query | " + " | ".join(engines) + " |")
    lines.append("| --- | " + " | ".join("---:" for _ in engines) + " |")
    totals = {e: 0.0 for e in engines}
    complete = {e: True for e in engines}
    ratios = {e: [] for e in engines}
    for q in range(1, args.queries + 1):
        base = by.get((BASELINE, q), {}).get("median")
        cells = []
        for e in engines:
            r = by.get((e, q), {})
            median = r.get("median")
            if median is None:
                cells.append("—")
                complete[e] = False
                continue
            totals[e] += median
            cell = f"{median:.3f}"
            if base:
                cell += f" ({median / base:.2f}x)"
                ratios[e].append(median / base)
            if comparison is not None:
                differs = str(q) in comparison.get(e, {})
            else:
                differs = bool(reference.get(q)) and r.get("digest") != reference[q]
            if differs:
                cell += " ≠"
            cells.append(cell)
        lines.append(f"| q{q} | " + " | ".join(cells) + " |")
    lines.append("| **total** | " + " | ".join(
        f"**{totals[e]:.3f}**" + ("" if complete[e] else " (partial)") for e in engines) + " |")
    lines.append("| **geomean ratio** | " + " | ".join(
        f"{geomean(ratios[e]):.2f}x" if ratios[e] else "—" for e in engines) + " |")

    failures = {}
    for r in records:
        if r.get("error"):
            query = f"q{r['query']}" if r.get("query") else "every query"
            failures.setdefault((r["engine"], r["error"]), []).append(query)
    if failures:
        lines += ["", "Not run (`—` above), with the reason:", ""]
        for (engine, reason), queries in failures.items():
            lines.append(f"- {engine}, {', '.join(queries)}: {reason}")

    rss = {}
    for r in records:
        for name, size in r.get("peak_rss", []):
            key = (r["engine"], name)
            rss[key] = max(rss.get(key, 0), size)
    if rss:
        lines += ["", "Peak resident memory over all queries (MiB):", "",
                  "| engine | process | peak |", "| --- | --- | ---: |"]
        for (engine, name), size in sorted(rss.items()):
            lines.append(f"| {engine} | {name} | {size / 1048576:.0f} |")

    chart = os.path.splitext(args.out)[0] + ".png"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(max(14, args.queries * 0.5), 5))
        width = 0.8 / max(len(engines), 1)
        for i, e in enumerate(engines):
            xs = [q + (i - len(engines) / 2) * width for q in range(1, args.queries + 1)]
            ys = [by.get((e, q), {}).get("median") or float("nan") for q in range(1, args.queries + 1)]
            ax.bar(xs, ys, width, label=e)
        ax.set_xticks(range(1, args.queries + 1))
        ax.set_xticklabels([f"q{q}" for q in range(1, args.queries + 1)])
        ax.set_yscale("log")
        ax.set_ylabel("median seconds (log scale)")
        ax.set_title(args.title)
        ax.legend(fontsize="small")
        fig.tight_layout()
        fig.savefig(chart, dpi=100)
        lines += ["", f"![chart]({os.path.basename(chart)})"]
    except ImportError:
        pass

    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
