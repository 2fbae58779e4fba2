"""Markdown table of a multiseed.sh folder: per method, final test top-1 of every seed, mean ±
sample standard deviation, and mean wall time per run (stdlib only). Methods whose intervals
(mean ± 2 standard errors) do not overlap labels' are marked. Runs with fewer epochs than the
folder's longest are unfinished: they are named and left out.

Usage: python3 scripts/experiments/summarize_seeds.py runs/multiseed
"""
import json
import math
import os
import re
import sys
from collections import defaultdict


def metrics(run):
    with open(os.path.join(run, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "runs/multiseed"
    found = []
    for name in sorted(os.listdir(root)):
        m = re.fullmatch(r"(\w+)-seed(\d+)", name)
        path = os.path.join(root, name)
        if not m or not os.path.isfile(os.path.join(path, "metrics.jsonl")):
            continue
        rows = metrics(path)
        if rows:
            found.append((m.group(1), int(m.group(2)), path, rows))
    # Every run of a folder has the same budget: one with fewer epochs than the longest is still
    # going (or was interrupted), and its last accuracy is not a result.
    budget = max((len(rows) for *_, rows in found), default=0)
    runs = defaultdict(list)
    for method, seed, path, rows in found:
        if len(rows) < budget:
            print(f"(unfinished, left out: {os.path.basename(path)} at epoch {len(rows)} of {budget})")
            continue
        final = rows[-1]["test_top1"]
        if not math.isfinite(final):
            sys.exit(f"{path}: non-finite final accuracy")
        runs[method].append((seed, final, len(rows), sum(r["epoch_seconds"] for r in rows)))

    def stats(values):
        mean = sum(values) / len(values)
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else float("nan")
        return mean, sd

    base = stats([r[1] for r in runs["labels"]]) if "labels" in runs else None
    n_base = len(runs.get("labels", []))
    print("| method | seeds | epochs | final top-1 per seed | mean ± std | vs labels | wall s/run |")
    print("|---|---:|---:|---|---:|---:|---:|")
    order = ["labels", "joint", "grl", "v2", "kd"]
    for method in sorted(runs, key=lambda k: (order.index(k) if k in order else 99, k)):
        rs = sorted(runs[method])
        mean, sd = stats([r[1] for r in rs])
        delta = ""
        if base and method != "labels" and len(rs) > 1 and n_base > 1:
            se = math.sqrt(sd ** 2 / len(rs) + base[1] ** 2 / n_base)
            d = mean - base[0]
            delta = f"{d:+.2f} ({'beyond noise' if abs(d) > 2 * se else 'within noise'})"
        seeds = ", ".join(f"{r[1]:.2f}" for r in rs)
        wall = sum(r[3] for r in rs) / len(rs)
        print(f"| {method} | {len(rs)} | {rs[0][2]} | {seeds} | {mean:.2f} ± {sd:.2f} | {delta} | {wall:.0f} |")


if __name__ == "__main__":
    main()
