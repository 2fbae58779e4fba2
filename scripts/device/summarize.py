"""One JSON and one markdown summary of a scripts/device/run.sh run (standard library only).

Usage: python3 scripts/device/summarize.py OUT
Reads what run.sh left in OUT (steps.tsv, environment.txt, selftest.json, bench-meal.jsonl,
bench-torch.jsonl, the e2e-*.log files) and writes OUT/summary.json and OUT/summary.md. A
missing or unreadable input becomes an explicit "missing" entry, never a number.
"""
import json
import math
import os
import re
import sys


def read_lines(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().splitlines()
    except OSError:
        return None


def read_jsonl(path):
    rows, bad = [], []
    for i, line in enumerate(read_lines(path) or []):
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            bad.append(f"{os.path.basename(path)}:{i + 1}: {e}")
    return rows, bad


def throughput(row, key):
    """Images/second of `key` (train or infer) from a meal or PyTorch bench line."""
    value = row.get(key)
    if isinstance(value, dict):
        value = value.get("median")
    if value is None:
        value = row.get(f"{key}_img_per_s")
    if isinstance(value, (int, float)) and math.isfinite(value) and value > 0:
        return float(value)
    return None


def target(row):
    return row.get("arch") or row.get("workload")


def finished_line(log):
    for line in reversed(read_lines(log) or []):
        if line.startswith("finished"):
            return line
    return None


def main():
    out = sys.argv[1]
    steps = []
    for line in read_lines(os.path.join(out, "steps.tsv")) or []:
        name, rc, secs = line.split("\t")
        steps.append({"step": name, "exit": int(rc), "seconds": float(secs)})
    env = {}
    for line in read_lines(os.path.join(out, "environment.txt")) or []:
        key, _, value = line.partition(":")
        env.setdefault(key.strip(), value.strip())

    selftest = None
    try:
        with open(os.path.join(out, "selftest.json"), encoding="utf-8") as f:
            selftest = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        selftest = {"missing": str(e)}

    meal_rows, bad_meal = read_jsonl(os.path.join(out, "bench-meal.jsonl"))
    torch_rows, bad_torch = read_jsonl(os.path.join(out, "bench-torch.jsonl"))
    meal_by_key = {(target(r), r.get("batch")): r for r in meal_rows}
    torch_by_key = {(target(r), r.get("batch")): r for r in torch_rows}
    keys = list(meal_by_key) + [k for k in torch_by_key if k not in meal_by_key]
    bench = []
    for key in keys:
        m = meal_by_key.get(key)
        t = torch_by_key.get(key)
        row = {"target": key[0], "batch": key[1], "meal_device": m.get("device") if m else None}
        for phase in ("train", "infer"):
            mv = throughput(m, phase) if m else None
            tv = throughput(t, phase) if t else None
            row[f"meal_{phase}_img_s"] = mv
            row[f"torch_{phase}_img_s"] = tv
            row[f"{phase}_ratio"] = round(mv / tv, 3) if mv and tv else None
        row["torch_framework"] = t.get("framework") if t else None
        bench.append(row)

    e2e = {}
    for s in steps:
        if s["step"].startswith("e2e-"):
            log = os.path.join(out, s["step"] + ".log")
            lines = read_lines(log) or []
            e2e[s["step"]] = {
                "exit": s["exit"],
                "seconds": s["seconds"],
                "result": finished_line(log) or (lines[-1] if lines else None),
            }
            if s["step"] == "e2e-eval":
                e2e[s["step"]]["table"] = [l for l in lines if l.strip()]

    summary = {
        "environment": env,
        "steps": steps,
        "failed_steps": [s["step"] for s in steps if s["exit"] != 0],
        "selftest": selftest,
        "bench": bench,
        "bench_unparsed": bad_meal + bad_torch,
        "e2e": e2e,
    }
    with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)

    def fmt(v, digits=1):
        return "—" if v is None else f"{v:.{digits}f}"

    md = ["# meal on a device: summary", ""]
    for k in ("date", "device", "gpu", "meal", "torch", "host", "cpu", "small"):
        if k in env:
            md.append(f"- {k}: {env[k]}")
    md += ["", "## Steps", "", "| step | exit | seconds |", "| --- | --- | --- |"]
    md += [f"| {s['step']} | {s['exit']} | {s['seconds']:.1f} |" for s in steps]
    md += ["", "## Selftest", ""]
    if "checks" in selftest:
        md.append(
            f"{selftest.get('passed')} passed, {selftest.get('failed')} failed on "
            f"{selftest.get('device')}"
        )
        md += [""] + [
            f"- {'PASS' if c['passed'] else 'FAIL'} {c['name']}: {c['detail']}"
            for c in selftest["checks"]
        ]
    else:
        md.append(f"no selftest result ({selftest.get('missing')})")
    md += [
        "",
        "## Throughput (images/s, median; ratio = meal / PyTorch)",
        "",
        "| target | batch | meal train | PyTorch train | ratio | meal infer | PyTorch infer | ratio |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for b in bench:
        md.append(
            f"| {b['target']} | {b['batch']} | {fmt(b['meal_train_img_s'])} | "
            f"{fmt(b['torch_train_img_s'])} | {fmt(b['train_ratio'], 2)} | "
            f"{fmt(b['meal_infer_img_s'])} | {fmt(b['torch_infer_img_s'])} | "
            f"{fmt(b['infer_ratio'], 2)} |"
        )
    frameworks = sorted({b["torch_framework"] for b in bench if b["torch_framework"]})
    if frameworks:
        md += ["", "PyTorch: " + ", ".join(frameworks)]
    if summary["bench_unparsed"]:
        md += ["", "Unparsed bench lines: " + "; ".join(summary["bench_unparsed"])]
    md += ["", "## End to end (data/cifar10-mini)", ""]
    for name, r in e2e.items():
        md.append(f"- {name} (exit {r['exit']}, {r['seconds']:.0f}s): {r['result']}")
        if r.get("table"):
            md += ["", "```"] + r["table"] + ["```", ""]
    md.append("")
    with open(os.path.join(out, "summary.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
