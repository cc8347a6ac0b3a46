#!/usr/bin/env python3
"""Table and plot for netns-scripts/bench.sh (standard library only).

    bench-plot.py BENCH.CSV RUN_ID|all OUT.svg

Prints a Markdown table of the rows of run RUN_ID (or every row: "all") and writes an SVG plot:
time until all receivers hold a verified copy against N, one line per tool, one panel per loss
rate. Rows of the same (tool, n, loss) are averaged; failed runs (ok < n) are marked in the table
and left out of the plot. "receiver CPU s/GB" is the receivers' CPU seconds per GB received per
receiver (the CSV's recv_cpu_s_per_gb; "–" for rows from before that column).
"""

import csv
import sys
from collections import defaultdict

COLORS = {"mcast": "#d62728", "udpcast": "#1f77b4", "uftp": "#2ca02c", "bittorrent": "#9467bd"}
ORDER = ["mcast", "udpcast", "uftp", "bittorrent"]


def tool_key(t):
    return (ORDER.index(t) if t in ORDER else len(ORDER), t)


def load(path, run_id):
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if run_id == "all" or r["run"] == run_id]
    if not rows:
        sys.exit(f"bench-plot: no rows for run {run_id} in {path}")
    return rows


def avg(rs, key, fmt):
    vals = [float(r[key]) for r in rs if r.get(key) not in (None, "")]
    return fmt.format(sum(vals) / len(vals)) if vals else "–"


def table(rows):
    groups = defaultdict(list)
    for r in rows:
        groups[(float(r["loss_pct"]), int(r["n"]), r["tool"])].append(r)
    size = int(rows[0]["size_bytes"])
    first = rows[0]
    out = [
        f"{size / 2**20:.0f} MiB, rate {first['rate']}, {first['cpus']} CPUs, kernel "
        f"{first['kernel']}, snooping {first['snooping']}, load1 at start "
        f"{min(float(r['load1']) for r in rows):.2f}-{max(float(r['load1']) for r in rows):.2f}",
        "",
        "| loss | N | tool | seconds | ok | goodput (Mbit/s) | bytes on wire | × file | sender link | CPU busy | receiver CPU s/GB | rcvbuf drops |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    best = {}
    for (loss, n, tool), rs in groups.items():
        secs = sum(float(r["seconds"]) for r in rs) / len(rs)
        if all(int(r["ok"]) == int(r["receivers"]) for r in rs):
            k = (loss, n)
            best[k] = min(best.get(k, secs), secs)
    for (loss, n, tool), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], tool_key(kv[0][2]))):
        secs = [float(r["seconds"]) for r in rs]
        mean = sum(secs) / len(secs)
        ok = "/".join((str(min(int(r["ok"]) for r in rs)), rs[0]["receivers"]))
        wire = sum(int(r["bytes_on_wire"]) for r in rs) / len(rs)
        sender = sum(int(r["sender_link_bytes"]) for r in rs) / len(rs)
        shown = f"{mean:.2f}" if len(secs) == 1 else f"{mean:.2f} ({min(secs):.2f}–{max(secs):.2f})"
        if best.get((loss, n)) == mean:
            shown = f"**{shown}**"
        out.append(
            f"| {loss:g} % | {n} | {tool} | {shown} | {ok} | {size * 8 / mean / 1e6:.0f} | "
            f"{wire / 1e6:,.0f} MB | {wire / size:.2f} | {sender / 1e6:,.0f} MB | "
            f"{avg(rs, 'cpu_busy_s', '{:.0f} s')} | {avg(rs, 'recv_cpu_s_per_gb', '{:.2f}')} | "
            f"{avg(rs, 'rcvbuf_drops', '{:,.0f}')} |"
        )
    return "\n".join(out)


def svg(rows, path):
    data = defaultdict(lambda: defaultdict(list))  # loss -> tool -> [(n, secs)]
    for r in rows:
        if int(r["ok"]) == int(r["receivers"]):
            data[float(r["loss_pct"])][r["tool"]].append((int(r["n"]), float(r["seconds"])))
    losses = sorted(data) or [0.0]
    ns = sorted({int(r["n"]) for r in rows})
    ymax = max([s for d in data.values() for pts in d.values() for _, s in pts] + [1.0]) * 1.15
    pw, ph, ml, mr, mt, mb = 360, 260, 60, 20, 70, 50
    width, height = ml + len(losses) * (pw + mr) + 130, mt + ph + mb
    first = rows[0]
    title = "Time until all N receivers hold a verified copy"
    subtitle = (
        f"{int(first['size_bytes']) / 2**20:.0f} MiB, links {first['rate']}bit/s, "
        f"{first['cpus']} CPUs, Linux {first['kernel']}"
    )
    e = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
        f'<text x="{width / 2}" y="38" text-anchor="middle" fill="#555">{subtitle}</text>',
    ]

    def xpos(n, x0):
        if len(ns) == 1:
            return x0 + pw / 2
        lo, hi = min(ns), max(ns)
        return x0 + 20 + (n - lo) / (hi - lo) * (pw - 40)

    def ypos(s):
        return mt + ph - s / ymax * ph

    step = next(v for v in (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if ymax / v <= 8)
    for k, loss in enumerate(losses):
        x0 = ml + k * (pw + mr)
        e.append(f'<rect x="{x0}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>')
        e.append(f'<text x="{x0 + pw / 2}" y="{mt - 8}" text-anchor="middle">loss {loss:g} % per link and direction</text>')
        y = 0.0
        while y <= ymax:
            yy = ypos(y)
            e.append(f'<line x1="{x0}" y1="{yy:.1f}" x2="{x0 + pw}" y2="{yy:.1f}" stroke="#eee"/>')
            e.append(f'<text x="{x0 - 5}" y="{yy + 4:.1f}" text-anchor="end">{y:g}</text>')
            y += step
        for n in ns:
            xx = xpos(n, x0)
            e.append(f'<text x="{xx:.1f}" y="{mt + ph + 18}" text-anchor="middle">{n}</text>')
        e.append(f'<text x="{x0 + pw / 2}" y="{mt + ph + 38}" text-anchor="middle">receivers (N)</text>')
        for tool in sorted(data[loss], key=tool_key):
            agg = defaultdict(list)
            for n, s in data[loss][tool]:
                agg[n].append(s)
            pts = [(xpos(n, x0), ypos(sum(v) / len(v))) for n, v in sorted(agg.items())]
            c = COLORS.get(tool, "#333")
            if len(pts) > 1:
                d = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
                e.append(f'<polyline points="{d}" fill="none" stroke="{c}" stroke-width="2"/>')
            for x, y in pts:
                e.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{c}"/>')
    e.append(
        f'<text transform="translate(16,{mt + ph / 2}) rotate(-90)" text-anchor="middle">seconds</text>'
    )
    lx = ml + len(losses) * (pw + mr) + 10
    tools = sorted({r["tool"] for r in rows}, key=tool_key)
    for i, tool in enumerate(tools):
        y = mt + 10 + i * 20
        c = COLORS.get(tool, "#333")
        e.append(f'<line x1="{lx}" y1="{y}" x2="{lx + 25}" y2="{y}" stroke="{c}" stroke-width="2"/>')
        e.append(f'<text x="{lx + 30}" y="{y + 4}">{tool}</text>')
    e.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(e) + "\n")


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    rows = load(sys.argv[1], sys.argv[2])
    print(table(rows))
    svg(rows, sys.argv[3])


if __name__ == "__main__":
    main()
