"""Markdown table of `meal bench` / torch_bench.py JSON lines (pairs: meal, then PyTorch).

With several rounds (the same benchmark's pair repeated), each cell is the median over the
rounds and the ratio column adds the range of the per-round ratios (each pair ran back to back,
so a per-round ratio shares the host's state of the moment).

With `--baseline FILE2` (an older meal's lines from the same rounds), a before/after table of
meal against itself follows.

Usage: python scripts/bench/table.py FILE [--baseline FILE2]   (needs only the standard library)
"""
import json
import statistics
import sys


def rate(v):
    """images/s with three significant figures below 10 (ImageNet steps run at a few img/s)."""
    return f"{v:.1f}" if v >= 10 else f"{v:.3g}"


def label(r):
    """A benchmark's name with its image side."""
    name = r.get("arch") or r.get("workload")
    # Lines of builds older than --image-size ran every model at 32×32.
    return f"{name} @{r.get('image_size', 32)}"


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    meal = [r for r in rows if r["framework"].startswith("meal")]
    torch = [r for r in rows if r["framework"].startswith("pytorch")]
    if not meal or len(meal) != len(torch):
        raise SystemExit(f"table.py: expected meal/PyTorch pairs, got {len(meal)} and {len(torch)}")
    first = meal[0]
    print(f"CPU: {first.get('cpu')} [{' '.join(first.get('simd', []))}]; "
          f"{first['framework']} on {first['threads']} thread(s); {torch[0]['framework']} "
          f"on {torch[0]['threads']} thread(s) (capability {torch[0].get('cpu_capability')}); "
          f"median of {first['steps']}+ timed steps after {first['warmup']} warm-up.\n")
    pairs = {}
    for m, t in zip(meal, torch):
        name = label(m)
        if name != label(t) or m["batch"] != t["batch"]:
            raise SystemExit(f"table.py: mismatched pair {name} / {t}")
        pairs.setdefault((name, m["batch"]), []).append((m, t))
    if any(len(p) > 1 for p in pairs.values()):
        rounds_table(pairs)
    else:
        single_table(meal, torch)
    if "--baseline" in sys.argv:
        base = [json.loads(line) for line in open(sys.argv[sys.argv.index("--baseline") + 1])
                if line.strip()]
        baseline_table(base, meal)


def baseline_table(base, meal):
    def by_benchmark(rows):
        out = {}
        for r in rows:
            out.setdefault((label(r), r["batch"]), []).append(r)
        return out
    before, after = by_benchmark(base), by_benchmark(meal)
    print("\nBefore/after (meal against itself, the same rounds; medians over the rounds):\n")
    print("| benchmark | batch | train before | train after | after/before | infer before "
          "| infer after | after/before |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for key, rows in after.items():
        if key not in before:
            continue
        cells = []
        for k in ("train_img_per_s", "infer_img_per_s"):
            b = statistics.median(r[k] for r in before[key])
            a = statistics.median(r[k] for r in rows)
            cells.append(f"{b:.1f} | {a:.1f} | {a / b:.2f}×")
        print(f"| {key[0]} | {key[1]} | {cells[0]} | {cells[1]} |")


def single_table(meal, torch):
    print("| benchmark | batch | meal train | PyTorch train | ratio | meal infer | PyTorch infer "
          "| ratio | meal peak MiB | PyTorch peak MiB | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for m, t in zip(meal, torch):
        name = label(m)

        def cell(key):
            a, b = m[key], t[key]
            part = key.split('_')[0]
            spread = lambda r: f"{rate(r[key])} ({rate(r[part]['min'])}–{rate(r[part]['max'])})"
            return f"{spread(m)} | {spread(t)} | {a / b:.2f}×"

        mem = "n/a | n/a | n/a"
        if m.get("peak_rss_mb") and t.get("peak_rss_mb"):
            mem = f"{m['peak_rss_mb']:.0f} | {t['peak_rss_mb']:.0f} | {m['peak_rss_mb'] / t['peak_rss_mb']:.2f}×"
        print(f"| {name} | {m['batch']} | {cell('train_img_per_s')} | {cell('infer_img_per_s')} | {mem} |")
    print("\nimages/s: median (min–max over the timed steps). Workloads: train = the whole MEAL "
          "step, infer = the student's eval forward. Peak MiB: the process's peak resident "
          f"memory; PyTorch's includes {torch[0].get('import_rss_mb', 0):.0f} MiB resident "
          "after `import torch`, before any model.")


def rounds_table(pairs):
    print("| benchmark | batch | rounds | meal train | PyTorch train | ratio (per-round range) "
          "| meal infer | PyTorch infer | ratio (per-round range) | meal / PyTorch peak MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (name, batch), ps in pairs.items():
        cells = []
        for key in ("train_img_per_s", "infer_img_per_s"):
            mm = statistics.median(m[key] for m, _ in ps)
            tt = statistics.median(t[key] for _, t in ps)
            per = [m[key] / t[key] for m, t in ps]
            cells.append(f"{mm:.1f} | {tt:.1f} | **{mm / tt:.2f}×** ({min(per):.2f}–{max(per):.2f})")
        mems = [(m.get("peak_rss_mb"), t.get("peak_rss_mb")) for m, t in ps]
        mem = "n/a"
        if all(a and b for a, b in mems):
            mem = f"{max(a for a, _ in mems):.0f} / {max(b for _, b in mems):.0f}"
        print(f"| {name} | {batch} | {len(ps)} | {cells[0]} | {cells[1]} | {mem} |")
    print("\nimages/s: the median over the rounds of each round's median step. Ratio: meal / "
          "PyTorch of those medians; in brackets the lowest and highest ratio of a single round "
          "(meal and PyTorch back to back). Peak MiB: the highest of the rounds.")


if __name__ == "__main__":
    main()
