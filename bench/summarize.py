#!/usr/bin/env python3
"""Turns one bench/compare.sh results folder into a Markdown summary on stdout.

Reads machine.txt, memory.tsv and the latchkey-bench JSON reports
(<server>-<scenario>.json) written beside them; computes nothing the reports
do not hold except the ratios. Standard library only.

usage: bench/summarize.py bench/results/<date>-<commit>
"""

import csv
import json
import sys
from pathlib import Path

SERVERS = ("latchkey", "simplejwt")


def load_report(folder, server, scenario):
    path = folder / f"{server}-{scenario}.json"
    if not path.exists():
        return None
    scenarios = json.loads(path.read_text())["scenarios"]
    match = [s for s in scenarios if s["scenario"] == scenario and s.get("total")]
    return match[0]["total"] if match else None


def load_memory(folder):
    """{(server, scenario): (rss KiB, peak KiB, processes)} and the scenario order."""
    memory, order = {}, []
    with open(folder / "memory.tsv", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            key = (row["server"], row["scenario"])
            memory[key] = (int(row["rss_kib"]), int(row["peak_kib"]), int(row["processes"]))
            if row["scenario"] != "idle" and row["scenario"] not in order:
                order.append(row["scenario"])
    return memory, order


def mib(kib):
    return f"{kib / 1024:.1f}"


def rate(total):
    return f"{total['rps']:.1f}" if total else "—"


def latency(total):
    if not total:
        return "—"
    lat = total["latency_ms"]
    return f"{lat['p50']:.2f} / {lat['p99']:.2f}"


def ratio(ours, theirs):
    if not ours or not theirs or theirs["rps"] == 0:
        return "—"
    return f"{ours['rps'] / theirs['rps']:.1f}×"


def memory_cell(memory, server, scenario):
    found = memory.get((server, scenario))
    return f"{mib(found[0])} / {mib(found[1])}" if found else "—"


def errors(total):
    return str(total["errors"]) if total else "—"


def table(folder, memory, order):
    yield (
        "| scenario | Latchkey req/s | simplejwt req/s | ratio "
        "| Latchkey p50 / p99 ms | simplejwt p50 / p99 ms "
        "| Latchkey RSS / peak MiB | simplejwt RSS / peak MiB | errors L / S |"
    )
    yield "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    yield (
        f"| idle | | | | | | {memory_cell(memory, 'latchkey', 'idle')} "
        f"| {memory_cell(memory, 'simplejwt', 'idle')} | |"
    )
    for scenario in order:
        ours, theirs = (load_report(folder, s, scenario) for s in SERVERS)
        yield (
            f"| {scenario} | {rate(ours)} | {rate(theirs)} | {ratio(ours, theirs)} "
            f"| {latency(ours)} | {latency(theirs)} "
            f"| {memory_cell(memory, 'latchkey', scenario)} "
            f"| {memory_cell(memory, 'simplejwt', scenario)} "
            f"| {errors(ours)} / {errors(theirs)} |"
        )


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    folder = Path(sys.argv[1])
    memory, order = load_memory(folder)
    processes = memory.get(("simplejwt", "idle"), (0, 0, 0))[2]
    print("```")
    print((folder / "machine.txt").read_text().rstrip())
    print("```")
    print()
    print("\n".join(table(folder, memory, order)))
    print()
    print("- ratio: Latchkey req/s ÷ simplejwt req/s.")
    print("- verify: Latchkey introspects (`POST /v1/introspect`, client Basic auth);")
    print("  simplejwt verifies (`POST /auth/jwt/verify/`, no client auth).")
    print(
        f"- simplejwt memory: gunicorn master and workers summed ({processes} processes); "
        "its peak is the sum of each process's own peak, an upper bound."
    )
    print("- RSS after the scenario / peak since start (VmHWM).")


if __name__ == "__main__":
    main()
