#!/usr/bin/env python3
"""The markdown table and results.json of tools/gpu_check.sh, from what its
steps wrote: the step status list, one JSON line per benchmark run (both
sides, all rounds), bench_cuda's JSON and bench/torch_ops.py's JSON. Any of
them may be missing or partial (a step failed or ran out of time): the table
then says so instead of a figure. Standard library only.

Figures: per model and side, the median over rounds of tokens/s and of peak
memory; the ratio dyngrad / PyTorch against the issue's goals (dense >= 0.9,
MoD and MoB >= 1.5; peak memory <= PyTorch's); achieved TFLOP/s = 3 x the
forward FLOPs per token that bench_gpt_step reports x tokens/s (forward +
backward = 3 forwards), set against the cuBLAS TF32 GEMM rate at 4096^3 of
the same run; the 4-op chain's time per forward op on both sides.
"""
import argparse
import json
import os
import statistics

GOALS = {"dense": 0.9, "mod": 1.5, "mob": 1.5}


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def lines_of(path):
    """The non-empty lines of a text file ([] when it is missing)."""
    try:
        with open(path) as f:
            return [line.rstrip("\n") for line in f if line.strip()]
    except OSError:
        return []


def load_runs(path):
    runs = []
    for line in lines_of(path):
        try:
            runs.append(json.loads(line))
        except ValueError:
            pass
    return runs


def load_status(path):
    rows = []
    for parts in (line.split("\t") for line in lines_of(path)):
        if len(parts) >= 3:
            rows.append({"step": parts[0], "status": parts[1], "seconds": int(parts[2] or 0),
                         "note": parts[3] if len(parts) > 3 else ""})
    return rows


def median_of(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarise(runs):
    """{(side, model): {tokens_per_s, peak_mb, ...}} medians over the rounds that gave a result."""
    out = {}
    for side in ("dyngrad", "pytorch"):
        for model in ("dense", "mod", "mob"):
            ok = [r for r in runs if r.get("side") == side and r.get("model") == model and r.get("rc") == 0
                  and "tokens_per_s" in r.get("result", {})]
            tried = [r for r in runs if r.get("side") == side and r.get("model") == model]
            res = [r["result"] for r in ok]
            out[(side, model)] = {
                "rounds_ok": len(ok), "rounds_tried": len(tried),
                "tokens_per_s": median_of([x["tokens_per_s"] for x in res]),
                "tokens_per_s_all": [x["tokens_per_s"] for x in res],
                "peak_smi_mb": median_of([r.get("peak_smi_mb") for r in ok]),
                "peak_allocated_mb": median_of([x.get("peak_gpu_allocated_mb") for x in res]),
                "peak_rss_mb": median_of([x.get("peak_rss_mb") for x in res]),
                "forward_flops_per_token": median_of([x.get("forward_flops_per_token") for x in res]),
                "final_loss": median_of([x.get("final_loss") for x in res]),
            }
    return out


def fmt(v, spec="{:,.0f}", missing="—"):
    return missing if v is None else spec.format(v)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in ("status", "runs", "bench-cuda", "torch-ops", "env", "json"):
        ap.add_argument("--" + name, required=True)
    ap.add_argument("--mode", default="gpu")
    ap.add_argument("--config", default="gpt2")
    ap.add_argument("--elapsed", type=int, default=0)
    args = ap.parse_args()

    status = load_status(args.status)
    runs = load_runs(args.runs)
    cuda = load_json(args.bench_cuda) or {}
    torch_ops = load_json(args.torch_ops) or {}
    env = ""
    if os.path.exists(args.env):
        with open(args.env) as f:
            env = f.read().strip()
    summary = summarise(runs)

    lines = [f"## tools/gpu_check.sh ({args.mode} mode, config {args.config}), {args.elapsed} s", ""]
    if env:
        lines += ["```", env, "```", ""]
    gemm = {g["name"]: g for g in cuda.get("gemm", [])}
    peak_rate = gemm.get("square 4096^3", {}).get("cublas_tf32_tflops")
    memory_key = "peak_smi_mb" if args.mode == "gpu" else "peak_rss_mb"
    memory_label = "peak GPU MiB (nvidia-smi)" if args.mode == "gpu" else "peak RSS MiB"
    lines += ["### Training step (zero_grad, forward, backward, AdamW), f32 + TF32, medians over rounds", "",
              f"| model | dyngrad tok/s | PyTorch tok/s | ratio (goal) | dyngrad {memory_label} | "
              f"PyTorch {memory_label} (allocated) | dyngrad TFLOP/s | PyTorch TFLOP/s | rounds |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for model in ("dense", "mod", "mob"):
        d, t = summary[("dyngrad", model)], summary[("pytorch", model)]
        ratio = d["tokens_per_s"] / t["tokens_per_s"] if d["tokens_per_s"] and t["tokens_per_s"] else None
        verdict = "" if ratio is None else (" ok" if ratio >= GOALS[model] else " BELOW")
        flops = d["forward_flops_per_token"]
        tf_d = 3 * flops * d["tokens_per_s"] / 1e12 if flops and d["tokens_per_s"] else None
        tf_t = 3 * flops * t["tokens_per_s"] / 1e12 if flops and t["tokens_per_s"] else None
        lines.append(
            f"| {model} | {fmt(d['tokens_per_s'])} | {fmt(t['tokens_per_s'])} | "
            f"{fmt(ratio, '{:.2f}x')} (>= {GOALS[model]}){verdict} | {fmt(d[memory_key])} | "
            f"{fmt(t[memory_key])} ({fmt(t['peak_allocated_mb'])}) | {fmt(tf_d, '{:.3g}')} | {fmt(tf_t, '{:.3g}')} | "
            f"dg {d['rounds_ok']}/{d['rounds_tried']}, pt {t['rounds_ok']}/{t['rounds_tried']} |")
    if peak_rate:
        lines += ["", f"cuBLAS TF32 GEMM rate at 4096^3 in this run: {peak_rate:.1f} TFLOP/s "
                      "(achieved TFLOP/s above = 3 x forward FLOPs/token x tokens/s)."]
    if gemm:
        lines += ["", "### GEMM (f32 operands, TF32 tensor cores)", "",
                  f"| shape | cuBLAS TFLOP/s | dg::matmul TFLOP/s (DG_TF32={cuda.get('dg_tf32', '?')}) |",
                  "|---|---:|---:|"]
        for g in cuda["gemm"]:
            lines.append(f"| {g['name']} | {g['cublas_tf32_tflops']:.1f} | {g['dyngrad_tflops']:.1f} |")
    chain_dg = cuda.get("chain4_us_per_op")
    chain_t = torch_ops.get("cases", {}).get("BM_Chain4/64", {}).get("median_s")
    chain_t = chain_t * 1e6 / 4 if chain_t else None
    if args.mode == "gpu":
        ratio = chain_dg / chain_t if chain_dg and chain_t else None
        lines += ["", "### 4-op chain on 64x64 (mul, add, tanh, sum + backward): time per forward op", "",
                  "| dyngrad µs/op | PyTorch µs/op | dyngrad / PyTorch (goal <= 1) |", "|---:|---:|---:|",
                  f"| {fmt(chain_dg, '{:.2f}')} | {fmt(chain_t, '{:.2f}')} | {fmt(ratio, '{:.2f}')} |"]
    lines += ["", "### Steps", "", "| step | status | seconds | note |", "|---|---|---:|---|"]
    for s in status:
        lines.append(f"| {s['step']} | {s['status']} | {s['seconds']} | {s['note']} |")
    print("\n".join(lines))

    result = {"mode": args.mode, "config": args.config, "elapsed_s": args.elapsed, "environment": env,
              "steps": status, "bench_cuda": cuda, "torch_ops": torch_ops,
              "training": {f"{side}/{model}": v for (side, model), v in summary.items()}, "runs": runs}
    with open(args.json, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
