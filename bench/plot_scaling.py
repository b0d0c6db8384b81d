#!/usr/bin/env python3
"""Draws and tabulates one bench/scaling.sh results folder.

Reads scaling.tsv (one row per size and scenario), sizes.tsv (seeding, import
and database size per size) and machine.txt, and writes an SVG chart: requests
per second against users above, p99 latency against users below, both axes
logarithmic, one line per scenario. Prints the same figures as Markdown tables
on stdout. Standard library only.

usage: bench/plot_scaling.py RESULTS_DIR [--out FILE]
  e.g. bench/plot_scaling.py bench/results/scaling-<date>-<commit> --out docs/benchmarks-scaling.svg
"""

import argparse
import csv
import math
import sys
from pathlib import Path
from xml.sax.saxutils import escape

# Okabe-Ito: tells apart with any colour vision, and in print.
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
MARKERS = ("circle", "square", "triangle", "diamond")

WIDTH = 760
LEFT, RIGHT = 78, 170  # room for the y labels, and for the legend
PANEL_TOP = (92, 416)
PANEL_HEIGHT = (250, 170)
HEIGHT = 650


# --- reading ----------------------------------------------------------------
def read_tsv(path):
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def read_machine(folder):
    info = {}
    path = folder / "machine.txt"
    if path.exists():
        for line in path.read_text().splitlines():
            key, _, value = line.partition(": ")
            info[key.strip()] = value.strip()
    return info


def load(folder):
    rows = read_tsv(folder / "scaling.tsv")
    if not rows:
        sys.exit(f"plot_scaling.py: no rows in {folder / 'scaling.tsv'}")
    series = {}  # scenario -> [(size, row)] in size order
    for row in rows:
        series.setdefault(row["scenario"], []).append((int(row["size"]), row))
    for points in series.values():
        points.sort(key=lambda p: p[0])
    return series, read_tsv(folder / "sizes.tsv"), read_machine(folder)


# --- numbers ----------------------------------------------------------------
def short_count(n):
    for div, unit in ((1_000_000, "M"), (1_000, "k")):
        if n >= div:
            v = n / div
            return f"{v:.0f}{unit}" if v == int(v) or v >= 100 else f"{v:.3g}{unit}"
    return f"{n:g}"


def tick_label(v):
    if v >= 1000:
        return short_count(v)
    return f"{v:g}"


def short_value(v):
    if v >= 10_000:
        return f"{v / 1000:.0f}k"
    if v >= 1_000:
        return f"{v / 1000:.1f}k"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.1f}"


def log_ticks(lo, hi):
    """Round values (1, 2, 5 × 10^k) spanning lo..hi, and the axis range."""
    lo_exp, hi_exp = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    for steps in ((1, 2, 5), (1, 3), (1,)):
        ticks = [m * 10**e for e in range(lo_exp, hi_exp + 1) for m in steps]
        below = max([t for t in ticks if t <= lo] or [ticks[0]])
        above = min([t for t in ticks if t >= hi] or [ticks[-1]])
        ticks = [t for t in ticks if below <= t <= above]
        if len(ticks) <= 9:
            return ticks, below, above
    return ticks, below, above


def x_ticks(sizes):
    lo, hi = min(sizes), max(sizes)
    lo_exp = math.floor(math.log10(lo))
    hi_exp = math.ceil(math.log10(hi))
    if hi_exp == lo_exp:
        hi_exp += 1
    ticks = [10**e for e in range(lo_exp, hi_exp + 1)]
    # A little air beyond the outer points, so markers do not sit on the frame.
    return ticks, math.log10(lo) - 0.15, math.log10(hi) + 0.15


# --- drawing ----------------------------------------------------------------
def marker(kind, x, y, colour, hollow=False):
    fill = "white" if hollow else colour
    style = f'fill="{fill}" stroke="{colour}" stroke-width="1.6"'
    if kind == "square":
        return f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" {style}/>'
    if kind == "triangle":
        return (f'<path d="M{x:.1f},{y - 5:.1f} L{x + 5:.1f},{y + 4:.1f} '
                f'L{x - 5:.1f},{y + 4:.1f} Z" {style}/>')
    if kind == "diamond":
        return (f'<path d="M{x:.1f},{y - 5.5:.1f} L{x + 5:.1f},{y:.1f} L{x:.1f},{y + 5.5:.1f} '
                f'L{x - 5:.1f},{y:.1f} Z" {style}/>')
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4.2" {style}/>'


def panel(out, series, field, label, top, height, xaxis, show_x_labels, value_labels):
    x_ticks_, x_lo, x_hi = xaxis
    plot_w = WIDTH - LEFT - RIGHT
    values = [float(r[field]) for pts in series.values() for _, r in pts if float(r[field]) > 0]
    if not values:
        return
    y_ticks, y_lo, y_hi = log_ticks(min(values), max(values))
    ly_lo, ly_hi = math.log10(y_lo), math.log10(y_hi)
    if ly_hi == ly_lo:
        ly_lo, ly_hi = ly_lo - 0.5, ly_hi + 0.5

    def px(size):
        return LEFT + (math.log10(size) - x_lo) / (x_hi - x_lo) * plot_w

    def py(v):
        return top + height - (math.log10(v) - ly_lo) / (ly_hi - ly_lo) * height

    out.append(f'<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{height}" '
               'fill="#fcfcfc" stroke="#c8c8c8"/>')
    for t in y_ticks:
        y = py(t)
        major = abs(math.log10(t) - round(math.log10(t))) < 1e-9
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" '
                   f'stroke="{"#dcdcdc" if major else "#ececec"}"/>')
        out.append(f'<text x="{LEFT - 7}" y="{y + 4:.1f}" text-anchor="end" '
                   f'class="tick">{escape(tick_label(t))}</text>')
    for t in x_ticks_:
        x = px(t)
        if LEFT - 0.5 <= x <= LEFT + plot_w + 0.5:
            out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + height}" stroke="#dcdcdc"/>')
            if show_x_labels:
                out.append(f'<text x="{x:.1f}" y="{top + height + 17}" text-anchor="middle" '
                           f'class="tick">{short_count(t)}</text>')
    mid = top + height / 2
    out.append(f'<text transform="translate({LEFT - 52},{mid:.1f}) rotate(-90)" '
               f'text-anchor="middle" class="axis">{escape(label)}</text>')

    for i, (scenario, points) in enumerate(series.items()):
        colour, kind = COLOURS[i % len(COLOURS)], MARKERS[i % len(MARKERS)]
        pts = [(px(s), py(float(r[field])), r) for s, r in points if float(r[field]) > 0]
        if len(pts) > 1:
            path = " ".join(f"{'M' if j == 0 else 'L'}{x:.1f},{y:.1f}" for j, (x, y, _) in enumerate(pts))
            out.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="2" '
                       'stroke-linejoin="round"/>')
        for x, y, r in pts:
            errored = int(r["errors"] or 0) > 0
            out.append(marker(kind, x, y, colour, hollow=errored))
            if value_labels:
                out.append(f'<text x="{x:.1f}" y="{y - 9:.1f}" text-anchor="middle" '
                           f'class="value" fill="{colour}">{short_value(float(r[field]))}</text>')


def legend(out, series):
    x, y = WIDTH - RIGHT + 18, PANEL_TOP[0] + 6
    out.append(f'<text x="{x}" y="{y}" class="axis">scenario</text>')
    for i, (scenario, points) in enumerate(series.items()):
        colour, kind = COLOURS[i % len(COLOURS)], MARKERS[i % len(MARKERS)]
        yy = y + 22 + i * 38
        errors = sum(int(r["errors"] or 0) for _, r in points)
        out.append(f'<line x1="{x}" y1="{yy}" x2="{x + 24}" y2="{yy}" stroke="{colour}" stroke-width="2"/>')
        out.append(marker(kind, x + 12, yy, colour))
        out.append(f'<text x="{x + 32}" y="{yy + 4}" class="legend">{escape(scenario)}</text>')
        out.append(f'<text x="{x + 32}" y="{yy + 19}" class="note">'
                   f'{errors} failed request{"" if errors == 1 else "s"}</text>')
    yy = y + 22 + len(series) * 38
    out.append(f'<circle cx="{x + 12}" cy="{yy}" r="4.2" fill="white" stroke="#555" stroke-width="1.6"/>')
    out.append(f'<text x="{x + 32}" y="{yy + 4}" class="note">hollow: that run</text>')
    out.append(f'<text x="{x + 32}" y="{yy + 18}" class="note">had failed requests</text>')


def svg(series, sizes_rows, machine):
    all_sizes = sorted({s for pts in series.values() for s, _ in pts})
    xaxis = x_ticks(all_sizes)
    date = machine.get("date", "")[:10] or "undated"
    commit = machine.get("commit", "unknown").split(" ")[0]
    conc, dur, cores = machine.get("concurrency", "?"), machine.get("duration", "?"), machine.get("nproc", "?")
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="system-ui, -apple-system, Segoe UI, '
        'Helvetica, Arial, sans-serif">',
        "<style>"
        ".title{font-size:17px;font-weight:600;fill:#222}"
        ".sub{font-size:12px;fill:#555}"
        ".axis{font-size:12.5px;fill:#333;font-weight:600}"
        ".tick{font-size:11.5px;fill:#555}"
        ".value{font-size:10.5px;font-weight:600}"
        ".legend{font-size:13px;fill:#222}"
        ".note{font-size:11px;fill:#666}"
        "</style>",
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT}" y="30" class="title">Latchkey as the user table grows</text>',
        f'<text x="{LEFT}" y="50" class="sub">{escape(date)} · commit {escape(commit)} · '
        f'{escape(cores)} cores · {escape(conc)} connections, {escape(dur)} per scenario · '
        'SQLite</text>',
        f'<text x="{LEFT}" y="67" class="sub">every user has one live session; '
        'both axes logarithmic</text>',
    ]
    panel(out, series, "rps", "requests / s", PANEL_TOP[0], PANEL_HEIGHT[0], xaxis,
          show_x_labels=True, value_labels=True)
    panel(out, series, "p99_ms", "p99 latency, ms", PANEL_TOP[1], PANEL_HEIGHT[1], xaxis,
          show_x_labels=True, value_labels=True)
    out.append(f'<text x="{LEFT + (WIDTH - LEFT - RIGHT) / 2:.0f}" '
               f'y="{PANEL_TOP[1] + PANEL_HEIGHT[1] + 40}" text-anchor="middle" class="axis">'
               'seeded users in the database, each with a live session</text>')
    legend(out, series)
    out.append("</svg>")
    return "\n".join(out) + "\n"


# --- the tables ---------------------------------------------------------------
def tables(series, sizes_rows, machine):
    yield f"Latchkey user-table scaling, {machine.get('date', '')} (commit {machine.get('commit', '?')}),"
    yield (f"{machine.get('nproc', '?')} cores, {machine.get('concurrency', '?')} connections, "
           f"{machine.get('duration', '?')} per scenario.")
    yield ""
    if sizes_rows:
        yield "| seeded users | users in table | seed s | import s | snapshot MiB | database MiB | idle RSS MiB |"
        yield "|---:|---:|---:|---:|---:|---:|---:|"
        for r in sizes_rows:
            yield (f"| {int(r['size']):,} | {int(r['users']):,} | {r['seed_s']} | {r['import_s']} "
                   f"| {int(r['snapshot_bytes']) / 1048576:.1f} | {int(r['db_bytes']) / 1048576:.1f} "
                   f"| {int(r['idle_rss_kib'] or 0) / 1024:.1f} |")
        yield ""
    yield "| seeded users | scenario | req/s | of smallest | p50 ms | p99 ms | errors | RSS MiB |"
    yield "|---:|---|---:|---:|---:|---:|---:|---:|"
    by_size = sorted({s for pts in series.values() for s, _ in pts})
    for size in by_size:
        for scenario, points in series.items():
            row = dict(points).get(size)
            if row is None:
                continue
            first = float(points[0][1]["rps"])
            share = f"{float(row['rps']) / first * 100:.0f} %" if first > 0 else "—"
            rss = f"{int(row['rss_kib']) / 1024:.1f}" if row.get("rss_kib") else "—"
            yield (f"| {size:,} | {scenario} | {float(row['rps']):.1f} | {share} "
                   f"| {float(row['p50_ms']):.2f} | {float(row['p99_ms']):.2f} "
                   f"| {row['errors']} | {rss} |")
    yield ""
    yield "- of smallest: req/s as a share of the same scenario's at the smallest size."
    yield "- errors: failed requests, warm-up included; RSS: the server's after the scenario."


def main():
    p = argparse.ArgumentParser(description="Chart and tables of a bench/scaling.sh results folder.")
    p.add_argument("folder", type=Path, help="bench/results/scaling-<date>-<commit>")
    p.add_argument("--out", type=Path,
                   help="SVG to write (default: scaling.svg in the folder), "
                        "e.g. docs/benchmarks-scaling.svg")
    p.add_argument("--quiet", action="store_true", help="write the SVG only, print no tables")
    args = p.parse_args()
    series, sizes_rows, machine = load(args.folder)
    out = args.out or args.folder / "scaling.svg"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(svg(series, sizes_rows, machine))
    print(f"plot_scaling.py: wrote {out}", file=sys.stderr, flush=True)
    if not args.quiet:
        print("\n".join(tables(series, sizes_rows, machine)))


if __name__ == "__main__":
    main()
