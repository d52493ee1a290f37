#!/usr/bin/env python3
"""Turns the records of `checked-arithmetic.sh` (ember-tpch-bench with
--alternate ember.checked_arithmetic=true,false) into a Markdown table: per
TPC-H query, the median time with checked arithmetic on and off, measured
side by side in one process, their ratio, and the totals; the raw records
go beside it.

    checked_report.py --records records.json --out results/checked-arithmetic-sf10-DATE.md
                      [--runs N] [--title "..."]

Exits 1, after writing the report, when a query failed or the two settings'
answers differ (by digest): TPC-H overflows nowhere, so they must agree.
"""

import argparse
import json
import os
import re

from report import geomean, machine

SETTING = re.compile(r"\[ember\.checked_arithmetic=(true|false)\]$")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--title", default="Checked arithmetic")
    args = parser.parse_args()

    records = json.load(open(args.records))
    by_query = {}  # query -> {checked: record}
    for record in records:
        match = SETTING.search(record["engine"])
        if not match:
            parser.error(f"{record['engine']}: not a record of ember.checked_arithmetic")
        by_query.setdefault(record["query"], {})[match.group(1) == "true"] = record

    runs = f"{args.runs} runs" if args.runs else "several runs"
    lines = [
        f"# {args.title}",
        "",
        f"- Machine: {machine()}",
        f"- Method: one process; each query's {runs} made with the setting on and off in "
        "turn (each round starting with the other one), the median of each reported.",
        "",
        "| query | checked (s) | unchecked (s) | checked / unchecked | same answer |",
        "| ---: | ---: | ---: | ---: | :---: |",
    ]
    ratios, total_on, total_off, bad = [], 0.0, 0.0, []
    for query in sorted(by_query):
        on, off = by_query[query].get(True), by_query[query].get(False)
        if not on or not off or on.get("median") is None or off.get("median") is None:
            bad.append(query)
            lines.append(f"| {query} | failed | failed | | |")
            continue
        same = on.get("digest") == off.get("digest")
        if not same:
            bad.append(query)
        ratio = on["median"] / off["median"]
        ratios.append(ratio)
        total_on += on["median"]
        total_off += off["median"]
        lines.append(f"| {query} | {on['median']:.3f} | {off['median']:.3f} | {ratio:.3f} | "
                     f"{'yes' if same else 'no'} |")
    total_ratio = total_on / total_off if total_off else float("nan")
    lines += [
        f"| total | {total_on:.2f} | {total_off:.2f} | {total_ratio:.3f} | |",
        f"| geometric mean of the ratios | | | {geomean(ratios):.3f} | |",
        "",
    ]
    if bad:
        lines += [f"Queries that failed or whose answers differ: {sorted(set(bad))}", ""]
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump(records, f, indent=1)
    if bad:
        raise SystemExit(f"checked_report.py: queries failed or answers differ: {sorted(set(bad))}")


if __name__ == "__main__":
    main()
