#!/usr/bin/python3
"""Pictures of a compare_routing run (examples/compare_routing writes the
folder; it calls this script itself unless given --no-plot).

    /usr/bin/python3 tools/plot_compare.py runs/compare

reads <dir>/summary.jsonl and each run's metrics.jsonl and writes
  loss_vs_flops.png   validation loss against training FLOPs, every run (every
                      seed, one colour per run; with --budgets the largest budget)
                      (MoD's final loss with causal routing as an open marker)
  depth_histogram.png share of tokens per depth (block applications), per run
                      of a kind with a routing trace (MoB, custom kinds, ...)
  depth_by_level.png  their mean depth on the tokens that predict answer bytes,
                      per difficulty level (only on the arithmetic corpus)
  isoflop.png         with --budgets: final val loss against training FLOPs,
                      per run (mean over seeds, error bars = sample sd), and
                      the dense frontier (the lowest dense run at each budget)

Run with Debian's interpreter (/usr/bin/python3), which has matplotlib.
"""
import argparse
import json
import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def finite(x):
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def save_against_flops(fig, ax, path, ylabel, title):
    """Log-FLOPs x axis, labels, grid and legend; writes the figure."""
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def seeds_of(r):
    """The rows of a run's seeds (the row itself when it has one seed)."""
    return r.get("per_seed") or [r]


def plot_loss_vs_flops(rows, folder, path):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, r in enumerate(rows):
        color = f"C{i}"
        for j, s in enumerate(seeds_of(r)):
            evals = [m for m in read_jsonl(os.path.join(folder, s["dir"], "metrics.jsonl")) if m.get("kind") == "eval"]
            xs = [m["train_flops"] for m in evals]
            ys = [m["val_loss"] for m in evals]
            label = f'{r["run"]} ({r["flops_per_token"] / 1e6:.2f} MFLOP/tok)' if j == 0 else None
            ax.plot(xs, ys, marker="o", ms=3, color=color, alpha=1.0 if j == 0 else 0.5, label=label)
        if finite(r.get("val_loss_causal")) and xs:
            ax.plot([xs[-1]], [r["val_loss_causal"]], marker="o", mfc="none", color=color, ms=7,
                    label=f'{r["run"]}, causal routing')
    save_against_flops(fig, ax, path, "validation loss (nats/byte)", "Validation loss against training compute")


def plot_depth_histogram(mobs, path):
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(mobs)
    for i, r in enumerate(mobs):
        h = r["depth_histogram"]
        ax.bar([d + (i - (len(mobs) - 1) / 2) * width for d in range(len(h))], [100 * x for x in h], width,
               label=f'{r["run"]} (mean {r["mean_depth"]:.2f})')
    ax.set_xlabel("depth (blocks applied before returning)")
    ax.set_ylabel("tokens (%)")
    ax.set_title("Depth histogram on the validation windows")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_depth_by_level(mobs, path):
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in mobs:
        lv = r["depth_by_level"]
        ax.plot([1, 2, 3, 4], [x if finite(x) else float("nan") for x in lv], marker="o", label=r["run"])
    ax.set_xticks([1, 2, 3, 4])
    ax.set_xlabel("difficulty level of the answer (operand digits)")
    ax.set_ylabel("mean depth of the predicting token")
    ax.set_title("Depth by difficulty")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_isoflop(rows, path):
    """Final val loss against training FLOPs per run over the budgets (error
    bars: sd over seeds), and the dense frontier: at each budget the lowest
    mean val loss among the dense runs (their sizes)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    names = list(dict.fromkeys(r["run"] for r in rows))
    for i, name in enumerate(names):
        runs = sorted((r for r in rows if r["run"] == name), key=lambda r: r["budget"])
        xs = [r["train_flops"] for r in runs]
        ys = [r["val_loss"] for r in runs]
        err = [r["val_loss_sd"] if finite(r.get("val_loss_sd")) else 0.0 for r in runs]
        marker = "s" if runs[0]["kind"] == "dense" else "o"
        ax.errorbar(xs, ys, yerr=err, marker=marker, ms=4, capsize=3, color=f"C{i}",
                    label=f'{name} ({runs[0]["kind"]})')
    frontier = []
    for b in sorted({r["budget"] for r in rows}):
        dense = [r for r in rows if r["budget"] == b and r["kind"] == "dense"]
        if dense:
            best = min(dense, key=lambda r: r["val_loss"])
            frontier.append((best["train_flops"], best["val_loss"]))
    if len(frontier) >= 2:
        ax.plot(*zip(*frontier), color="black", ls="--", lw=1.2, label="dense frontier")
    save_against_flops(fig, ax, path, "final validation loss (nats/byte)", "IsoFLOP sweep: mean over seeds, bars = sample sd")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", help="the --out folder of compare_routing")
    args = ap.parse_args()
    rows = read_jsonl(os.path.join(args.folder, "summary.jsonl"))
    if not rows:
        raise SystemExit(f"plot_compare.py: {args.folder}/summary.jsonl holds no runs")
    written = []
    if len({r.get("budget", 0) for r in rows}) > 1:
        written.append(os.path.join(args.folder, "isoflop.png"))
        plot_isoflop(rows, written[-1])
        largest = max(r["budget"] for r in rows)
        rows = [r for r in rows if r["budget"] == largest]
    written.append(os.path.join(args.folder, "loss_vs_flops.png"))
    plot_loss_vs_flops(rows, args.folder, written[-1])
    mobs = [r for r in rows if r.get("depth_histogram")]
    if mobs:
        written.append(os.path.join(args.folder, "depth_histogram.png"))
        plot_depth_histogram(mobs, written[-1])
        if any(finite(x) for r in mobs for x in r.get("depth_by_level", [])):
            written.append(os.path.join(args.folder, "depth_by_level.png"))
            plot_depth_by_level(mobs, written[-1])
    print("pictures: " + ", ".join(written))


if __name__ == "__main__":
    main()
