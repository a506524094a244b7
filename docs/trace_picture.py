"""Draw a Chrome trace (from `lispvm trace FILE --chrome OUT.json`) as an SVG timeline.

This makes the picture in docs/tracing.md from a real trace; it needs nothing beyond Python.
One row per Lisp process, grouped by scheduler; run slices as bars (colour = scheduler),
messages as arrows from the send to the receiver's next slice, spawns and exits as ticks.

Usage: python docs/trace_picture.py trace.json out.svg [--title TEXT]
"""

from __future__ import annotations

import argparse
import json
from html import escape

ROW, LEFT, TOP, WIDTH = 18, 150, 40, 900
COLOURS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948"]


def render(trace: dict, title: str) -> str:
    """The SVG text for a Chrome trace dictionary."""
    evs = trace["traceEvents"]
    procs = {e["pid"]: e["args"]["name"] for e in evs if e["ph"] == "M" and e["name"] == "process_name"}
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in evs if e["ph"] == "M" and e["name"] == "thread_name"}
    timed = [e for e in evs if e["ph"] in ("X", "s", "f", "i")]
    t0 = min(e["ts"] for e in timed)
    t1 = max(e["ts"] + e.get("dur", 0) for e in timed)
    scale = WIDTH / max(t1 - t0, 1.0)
    order = sorted({(e["pid"], e["tid"]) for e in timed}, key=lambda k: (list(procs).index(k[0]) if k[0] in procs
                                                                       else 99, k[1]))
    rows = {k: i for i, k in enumerate(order)}
    colour = {pid: COLOURS[i % len(COLOURS)] for i, pid in enumerate(procs)}
    height = TOP + ROW * len(rows) + 40

    def x(ts: float) -> float:
        return LEFT + (ts - t0) * scale

    def y(key: tuple) -> float:
        return TOP + ROW * rows[key]

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{LEFT + WIDTH + 20}" height="{height}" '
           'font-family="sans-serif" font-size="11">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="10" y="18" font-size="14" font-weight="bold">{escape(title)}</text>',
           '<defs><marker id="arrow" viewBox="0 0 6 6" refX="6" refY="3" markerWidth="6" markerHeight="6" '
           'orient="auto"><path d="M0,0 L6,3 L0,6 z" fill="#555"/></marker></defs>']
    for key in rows:
        label = threads.get(key, "")
        sched = procs.get(key[0], "")
        out.append(f'<text x="6" y="{y(key) + 12}">{escape(label)} <tspan fill="#888">'
                   f'{escape(sched.split(" (")[0].replace("scheduler", "s"))}</tspan></text>')
        out.append(f'<line x1="{LEFT}" x2="{LEFT + WIDTH}" y1="{y(key) + ROW - 1}" y2="{y(key) + ROW - 1}" '
                   'stroke="#eee"/>')
    for e in timed:
        key = (e["pid"], e["tid"])
        if e["ph"] == "X":
            w = max(e["dur"] * scale, 1.0)
            out.append(f'<rect x="{x(e["ts"]):.1f}" y="{y(key) + 3}" width="{w:.1f}" height="{ROW - 7}" '
                       f'fill="{colour.get(e["pid"], "#999")}"><title>{escape(str(e.get("args")))}</title></rect>')
        elif e["ph"] == "i":
            out.append(f'<line x1="{x(e["ts"]):.1f}" x2="{x(e["ts"]):.1f}" y1="{y(key) + 1}" y2="{y(key) + ROW - 3}" '
                       f'stroke="#222"><title>{escape(e["name"])}</title></line>')
    starts = {e["id"]: e for e in timed if e["ph"] == "s"}
    for e in timed:
        if e["ph"] == "f" and e["id"] in starts:
            s = starts[e["id"]]
            dash = ' stroke-dasharray="4,3"' if e.get("cat") == "migration" else ""
            out.append(f'<line x1="{x(s["ts"]):.1f}" y1="{y((s["pid"], s["tid"])) + ROW / 2:.1f}" '
                       f'x2="{x(e["ts"]):.1f}" y2="{y((e["pid"], e["tid"])) + ROW / 2:.1f}" stroke="#555" '
                       f'stroke-width="0.8" marker-end="url(#arrow)"{dash}/>')
    span = (t1 - t0) / 1000.0
    out.append(f'<text x="{LEFT}" y="{height - 12}" fill="#555">0 ms</text>')
    out.append(f'<text x="{LEFT + WIDTH - 60}" y="{height - 12}" fill="#555">{span:.1f} ms</text>')
    legend = "  ".join(f"{name.split(' (')[0]}" for name in procs.values())
    out.append(f'<text x="{LEFT + 200}" y="{height - 12}" fill="#555">bars: run slices, coloured by '
               f'scheduler ({escape(legend)}); arrows: messages; dashed: a move</text>')
    out.append("</svg>")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("out")
    ap.add_argument("--title", default="lispvm trace")
    a = ap.parse_args()
    with open(a.trace, encoding="utf-8") as f:
        svg = render(json.load(f), a.title)
    with open(a.out, "w", encoding="utf-8") as f:
        f.write(svg)


if __name__ == "__main__":
    main()
