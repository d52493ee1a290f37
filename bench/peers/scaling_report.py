#!/usr/bin/env python3
"""Turns `bench/scaling.sh`'s records into a Markdown report: per scale
factor and engine (Ember embedded, clusters of N executors), the total of
the 22 query medians, its ratio to embedded, the growth from the smallest
scale factor, and the peak resident memory of the largest process and of
all processes together.

    scaling_report.py --records sf1-embedded.json sf1-cluster-2.json ... \\
        --out tpch-scaling-DATE.md --raw tpch-scaling-DATE.json [--threads 2] [--runs 3]

Each records file is named `sf<SF>-<engine>.json`, and its records get a
`scale_factor` field in the raw output; or it is an earlier run's raw
output (its records have that field), so a new scale factor can be added
to an earlier run's without running that one again.
"""

import argparse
import json
import os
import re

from report import machine


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", nargs="+", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--raw", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    records = []
    for path in args.records:
        match = re.match(r"sf([0-9.]+)-", os.path.basename(path))
        with open(path) as f:
            for record in json.load(f):
                if match:
                    record["scale_factor"] = float(match[1])
                elif "scale_factor" not in record:
                    raise SystemExit(f"{path}: expected a name like sf1-embedded.json, or a raw output")
                records.append(record)

    scale_factors = sorted({r["scale_factor"] for r in records})
    engines = []
    for r in records:
        if r["engine"] not in engines:
            engines.append(r["engine"])
    engines.sort(key=lambda e: (e != "ember-embedded", int(e.rsplit("-", 1)[-1]) if e[-1].isdigit() else 0))

    summary = {}
    for sf in scale_factors:
        for engine in engines:
            mine = [r for r in records if r["scale_factor"] == sf and r["engine"] == engine]
            if not mine:
                continue
            failed = [r["query"] for r in mine if r.get("median") is None]
            peaks = {}
            for r in mine:
                for name, size in r.get("peak_rss", []):
                    peaks[name] = max(peaks.get(name, 0), size)
            summary[(sf, engine)] = {
                "total": sum(r["median"] for r in mine if r.get("median") is not None),
                "failed": failed,
                "largest": max(peaks.values(), default=0),
                "all": sum(peaks.values()),
            }

    def sf_text(sf):
        return f"{sf:g}"

    def table(cell):
        """A table of engine x scale factor; `cell(sf, engine, summary)`
        writes one cell from that run's summary."""
        rows = [
            "| engine | " + " | ".join(f"SF {sf_text(s)}" for s in scale_factors) + " |",
            "| --- | " + " | ".join("---:" for _ in scale_factors) + " |",
        ]
        for engine in engines:
            cells = []
            for sf in scale_factors:
                s = summary.get((sf, engine))
                cells.append("—" if s is None else cell(sf, engine, s))
            rows.append(f"| {engine} | " + " | ".join(cells) + " |")
        return rows

    first = scale_factors[0]

    def time_cell(sf, engine, s):
        base = summary.get((sf, "ember-embedded"))
        start = summary.get((first, engine))
        cell = f"{s['total']:.2f}"
        notes = []
        if base and engine != "ember-embedded":
            notes.append(f"{s['total'] / base['total']:.2f}x")
        if start and sf != first:
            notes.append(f"{s['total'] / start['total']:.1f}x SF {sf_text(first)}")
        if notes:
            cell += " (" + ", ".join(notes) + ")"
        if s["failed"]:
            cell += " failed: " + ", ".join(f"q{q}" for q in s["failed"])
        return cell

    def memory_cell(sf, engine, s):
        return f"{s['largest'] / 2**20:.0f} / {s['all'] / 2**20:.0f}"

    lines = [
        f"# TPC-H scaling: Ember on {args.threads} cores, median of {args.runs} runs",
        "",
        f"- Machine: {machine()}",
        "- Command: `bench/scaling.sh --scale-factors "
        + ",".join(sf_text(s) for s in scale_factors)
        + f" --runs {args.runs} --threads {args.threads}`",
        "- Engines: Ember embedded (`target_partitions` = cores) and local clusters of N",
        "  executors sharing the same cores (each executor max(1, cores / N) task slots).",
        "",
        "Total of the 22 query medians in seconds (ratio to embedded at the same scale",
        "factor; growth from the smallest scale factor):",
        "",
        *table(time_cell),
        "",
        "Peak resident memory in MiB: the largest single process / all of the",
        "engine's processes together (client, scheduler and executors on a cluster):",
        "",
        *table(memory_cell),
    ]
    lines.append("")
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    with open(args.raw, "w") as f:
        json.dump(records, f, indent=1)


if __name__ == "__main__":
    main()
