"""Compares every engine's answer to each TPC-H query with the reference
engine's (DuckDB), numbers within a relative tolerance.

The runners write one file per engine and query, `<engine>-q<N>.json`: the
rows as JSON lists, numbers as computed (not rounded), dates as
`YYYY-MM-DD`, strings trimmed, NULL as null (`ember-tpch-bench --answers`,
`tpch_peers.py --answers`). Two answers agree when they have the same
rows, whatever their order: numbers within a relative 1e-9 or an absolute
1e-6 of each other (an average of decimals is a decimal with 6 places in
DataFusion, a double in DuckDB; an integer and a float compare by value),
everything else equal.

    answers.py --dir DIR [--reference duckdb] [--out comparison.json]

Prints one line per answer that disagrees, writes {engine: {query: reason}}
for those to --out, and exits 1 when any disagrees, 0 otherwise. An engine
with no answer to a query (it could not run it) is not compared.
"""

import argparse
import json
import math
import os
import re
import sys

RELATIVE_TOLERANCE = 1e-9
ABSOLUTE_TOLERANCE = 1e-6


def write(directory, engine, query, rows, normalize):
    """Writes one answer, each value passed through `normalize`."""
    path = os.path.join(directory, f"{engine}-q{query}.json")
    with open(path, "w") as f:
        json.dump([[normalize(v) for v in row] for row in rows], f)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _sort_key(row):
    """Orders rows by their text and their numbers to 6 significant digits,
    so that two answers' rows pair up although their numbers differ in the
    last bits."""
    key = []
    for value in row:
        if value is None:
            key.append((0, ""))
        elif _is_number(value):
            key.append((1, float(f"{float(value):.6g}")))
        else:
            key.append((2, str(value)))
    return key


def _same(a, b):
    if _is_number(a) and _is_number(b):
        a, b = float(a), float(b)
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        gap = abs(a - b)
        return (
            a == b
            or gap <= ABSOLUTE_TOLERANCE
            or gap <= RELATIVE_TOLERANCE * max(abs(a), abs(b))
        )
    return a == b


def difference(expected, actual):
    """None when the answers agree; otherwise where they first differ."""
    if len(expected) != len(actual):
        return f"{len(actual)} rows, expected {len(expected)}"
    for number, (want, got) in enumerate(
        zip(sorted(expected, key=_sort_key), sorted(actual, key=_sort_key))
    ):
        if len(want) != len(got):
            return f"row {number}: {len(got)} columns, expected {len(want)}"
        for column, (a, b) in enumerate(zip(want, got)):
            if not _same(a, b):
                return f"row {number} column {column}: {b!r}, expected {a!r}"
    return None


def compare(directory, reference):
    """{engine: {query: reason}} for every answer that disagrees with the
    reference's, and the number of answers compared."""
    pattern = re.compile(r"^(?P<engine>.+)-q(?P<query>\d+)\.json$")
    answers = {}
    for name in sorted(os.listdir(directory)):
        match = pattern.match(name)
        if match:
            with open(os.path.join(directory, name)) as f:
                answers[(match["engine"], int(match["query"]))] = json.load(f)
    disagreements = {}
    compared = 0
    for (engine, query), rows in sorted(answers.items()):
        if engine == reference:
            continue
        expected = answers.get((reference, query))
        if expected is None:
            continue
        compared += 1
        reason = difference(expected, rows)
        if reason is not None:
            disagreements.setdefault(engine, {})[str(query)] = reason
    return disagreements, compared


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--reference", default="duckdb")
    parser.add_argument("--out")
    args = parser.parse_args()
    disagreements, compared = compare(args.dir, args.reference)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(disagreements, f, indent=1, sort_keys=True)
    for engine, queries in sorted(disagreements.items()):
        for query, reason in sorted(queries.items(), key=lambda item: int(item[0])):
            print(f"answers: {engine} q{query} differs from {args.reference}: {reason}")
    wrong = sum(len(q) for q in disagreements.values())
    print(
        f"answers: {compared} compared with {args.reference}'s, "
        f"{compared - wrong} agree, {wrong} differ",
        file=sys.stderr,
    )
    sys.exit(1 if wrong else 0)


if __name__ == "__main__":
    main()
