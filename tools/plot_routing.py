#!/usr/bin/python3
"""Pictures of a Mixture-of-Blocks routing trace (the JSON that
RoutingTrace::to_json writes, e.g. train_lm's <out>/routing.json).

    /usr/bin/python3 tools/plot_routing.py runs/mob/routing.json --out runs/mob

writes
  depth_text.png   the text of the first sequence, each character on a
                   background coloured by the number of blocks its token ran
  block_usage.png  block applications per step, stacked by block
  depth_by_level.png  mean depth per difficulty level of the arithmetic
                   corpus (only when the JSON has "answer_levels")

Each entry of "paths" is [step, block (-1 = return), w, lambda], w the
weight of the block's output (older traces called it q; same position).

The same trace is also drawn, with no Python at all, as the static page
routing.html that train_lm and compare_routing write beside routing.json
(models/trace_page.h): the text coloured by depth, and each token's path
(step, block, w, lambda) on hover; open it in a browser, with #token=N to
show token N's path.

Run with Debian's interpreter (/usr/bin/python3), which has matplotlib.
"""
import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import colors  # noqa: E402


def depths(trace):
    """Block applications per token (entries with block >= 0)."""
    return [sum(1 for step in path if step[1] >= 0) for path in trace["paths"]]


def plot_depth_text(trace, path, max_chars=1200, width=80):
    """Characters of sequence 0 laid out in rows, coloured by depth."""
    text = bytes(trace.get("text_bytes", [])).decode("utf-8", errors="replace")
    d = depths(trace)[: trace["T"]]
    n = min(len(text), len(d), max_chars)
    cmap = plt.get_cmap("viridis", trace["max_depth"] + 1)
    rows, row, col = [], [], 0
    for i in range(n):
        ch = text[i]
        row.append((ch, d[i]))
        col += 1
        if ch == "\n" or col >= width:
            rows.append(row)
            row, col = [], 0
    if row:
        rows.append(row)
    cols = max(len(r) for r in rows)
    fig_h = max(1.5, 0.28 * len(rows) + 0.8)
    fig, ax = plt.subplots(figsize=(cols * 0.16 + 1.5, fig_h))
    ax.set_xlim(0, cols)
    ax.set_ylim(len(rows), 0)
    ax.axis("off")
    for r, cells in enumerate(rows):
        for c, (ch, depth) in enumerate(cells):
            ax.add_patch(plt.Rectangle((c, r), 1, 1, color=cmap(depth)))
            shown = "⏎" if ch == "\n" else ch
            ax.text(c + 0.5, r + 0.55, shown, ha="center", va="center", family="monospace", fontsize=8,
                    color="white" if depth < trace["max_depth"] / 2 else "black")
    norm = colors.Normalize(vmin=-0.5, vmax=trace["max_depth"] + 0.5)
    cb = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, fraction=0.02, pad=0.01,
                      ticks=range(trace["max_depth"] + 1))
    cb.set_label("blocks applied")
    ax.set_title("Mixture-of-Blocks: depth of every character")
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)


def plot_block_usage(trace, path):
    """Stacked bars: applications of each block at each step."""
    usage = trace["summary"]["usage"]  # [step][block]
    steps = list(range(len(usage)))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bottom = [0] * len(steps)
    for k in range(trace["n_blocks"]):
        vals = [usage[s][k] for s in steps]
        ax.bar(steps, vals, bottom=bottom, label=f"block {k}")
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xlabel("step d")
    ax.set_ylabel("tokens")
    ax.set_title("Block usage per step")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)


def plot_depth_by_level(trace, path):
    """Mean depth of answer tokens per difficulty level (1..4), and of the rest."""
    levels = trace["answer_levels"]
    d = depths(trace)
    groups = {}
    for lv, depth in zip(levels, d):
        groups.setdefault(lv if lv > 0 else 0, []).append(depth)
    keys = sorted(groups)
    labels = ["other" if k == 0 else f"level {k}" for k in keys]
    means = [sum(groups[k]) / len(groups[k]) for k in keys]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.bar(labels, means, color="tab:purple")
    ax.set_ylabel("mean blocks applied")
    ax.set_title("Depth by difficulty (answer characters)")
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trace", help="routing JSON written by RoutingTrace::to_json")
    ap.add_argument("--out", default=None, help="folder for the PNGs (default: the trace's folder)")
    args = ap.parse_args()
    with open(args.trace) as f:
        trace = json.load(f)
    out = args.out or os.path.dirname(os.path.abspath(args.trace))
    os.makedirs(out, exist_ok=True)
    written = []
    if trace.get("text_bytes"):
        plot_depth_text(trace, os.path.join(out, "depth_text.png"))
        written.append("depth_text.png")
    plot_block_usage(trace, os.path.join(out, "block_usage.png"))
    written.append("block_usage.png")
    if trace.get("answer_levels"):
        plot_depth_by_level(trace, os.path.join(out, "depth_by_level.png"))
        written.append("depth_by_level.png")
    print("wrote " + ", ".join(os.path.join(out, w) for w in written))


if __name__ == "__main__":
    main()
