"""Markdown table of an experiment folder made by cifar10_cpu.sh (stdlib only).

Usage: python3 scripts/experiments/summarize.py runs/cpu-cifar10
"""
import json
import os
import sys


def metrics(run):
    with open(os.path.join(run, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "runs/cpu-cifar10"
    rows = []
    ensemble = None
    for name in sorted(os.listdir(root)):
        run = os.path.join(root, name)
        if not os.path.isfile(os.path.join(run, "metrics.jsonl")):
            continue
        m = metrics(run)
        last = m[-1]
        best = max(m, key=lambda r: r["test_top1"])
        seconds = sum(r["epoch_seconds"] for r in m)
        rows.append((name, len(m), last["test_top1"], best["test_top1"], best["epoch"] + 1, last["test_top5"],
                     seconds, sum(r["images_per_sec"] for r in m) / len(m)))
        t = os.path.join(run, "teachers.json")
        if os.path.isfile(t) and ensemble is None:
            with open(t) as f:
                ensemble = json.load(f)
    print("| run | epochs | final test top-1 | best top-1 (epoch) | final top-5 | train time | img/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, n, last, best, be, top5, secs, ips in rows:
        print(f"| {name} | {n} | {last:.2f}% | {best:.2f}% ({be}) | {top5:.2f}% | {secs / 60:.1f} min | {ips:.0f} |")
    if ensemble:
        print()
        for arch, path, acc in ensemble["teachers"]:
            print(f"- teacher {arch}: {acc['top1']:.2f}% top-1 ({acc['top5']:.2f}% top-5)")
        e = ensemble["ensemble"]
        print(f"- ensemble of {len(ensemble['teachers'])} (mean softmax): {e['top1']:.2f}% top-1 ({e['top5']:.2f}% top-5)")


if __name__ == "__main__":
    main()
