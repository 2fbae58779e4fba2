"""Markdown table of a multiseed.sh folder: per method, final test top-1 of every seed, mean ±
sample standard deviation, mean wall time per run, and the epochs times the fastest epoch of any
seed (an estimate of the run's time on a quiet machine, where the runs shared theirs), then the
mean test top-1 curve of each method (stdlib only). Each method's difference
from labels and from KD comes with its 95% interval by Welch's t (unequal variances, the
Welch-Satterthwaite degrees of freedom, the two-sided 5% critical value of Student's t), and is
called beyond noise only when that interval excludes 0: with three seeds a side the critical
value is about 2.8, not the 2 of a normal approximation. Runs with fewer epochs than the
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
    curves = defaultdict(list)
    for method, seed, path, rows in found:
        if len(rows) < budget:
            print(f"(unfinished, left out: {os.path.basename(path)} at epoch {len(rows)} of {budget})")
            continue
        final = rows[-1]["test_top1"]
        if not math.isfinite(final):
            sys.exit(f"{path}: non-finite final accuracy")
        seconds = [r["epoch_seconds"] for r in rows]
        runs[method].append((seed, final, len(rows), sum(seconds), min(seconds) * len(seconds)))
        curves[method].append([r["test_top1"] for r in rows])

    def stats(values):
        mean = sum(values) / len(values)
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else float("nan")
        return mean, sd

    def versus(method, ref):
        """`+d [lo, hi] (beyond noise|within noise)` for mean(method) - mean(ref), or ''."""
        a = [r[1] for r in runs.get(method, [])]
        b = [r[1] for r in runs.get(ref, [])]
        if method == ref or len(a) < 2 or len(b) < 2:
            return ""
        (ma, sa), (mb, sb) = stats(a), stats(b)
        va, vb = sa**2 / len(a), sb**2 / len(b)
        d = ma - mb
        if va + vb == 0:
            return f"{d:+.2f}"
        df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
        half = t_critical(df) * math.sqrt(va + vb)
        verdict = "beyond noise" if abs(d) > half else "within noise"
        return f"{d:+.2f} [{d - half:+.2f}, {d + half:+.2f}] ({verdict})"

    print("| method | seeds | epochs | final top-1 per seed | mean ± std | vs labels (95% CI) "
          "| vs KD (95% CI) | wall s/run | epochs × fastest epoch, s |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|")
    order = ["labels", "joint", "grl", "v2", "kd"]

    def in_order(methods):
        return sorted(methods, key=lambda k: (order.index(k) if k in order else 99, k))

    for method in in_order(runs):
        rs = sorted(runs[method])
        mean, sd = stats([r[1] for r in rs])
        seeds = ", ".join(f"{r[1]:.2f}" for r in rs)
        wall = sum(r[3] for r in rs) / len(rs)
        quiet = min(r[4] for r in rs)
        print(f"| {method} | {len(rs)} | {rs[0][2]} | {seeds} | {mean:.2f} ± {sd:.2f} "
              f"| {versus(method, 'labels')} | {versus(method, 'kd')} | {wall:.0f} | {quiet:.0f} |")

    # The epoch curves: test top-1 after every few epochs, mean over the seeds.
    marks = sorted({1, *range(budget // 5 or 1, budget + 1, budget // 5 or 1), budget})
    print()
    print("| method | " + " | ".join(f"epoch {e}" for e in marks) + " |")
    print("|---|" + "---:|" * len(marks))
    for method in in_order(curves):
        cs = curves[method]
        means = [sum(c[e - 1] for c in cs) / len(cs) for e in marks]
        print(f"| {method} | " + " | ".join(f"{m:.2f}" for m in means) + " |")


# Two-sided 5% critical values of Student's t for 1..30 degrees of freedom; beyond 30 the
# normal's 1.96 is within 4%, and 2.04 (df = 30) is kept as the conservative value.
T_975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def t_critical(df):
    """Critical value at fractional Welch degrees of freedom, rounded down (conservative)."""
    return T_975[min(max(int(math.floor(df)), 1), len(T_975)) - 1]


if __name__ == "__main__":
    main()
