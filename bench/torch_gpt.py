#!/usr/bin/python3
"""The PyTorch side of bench/compare_gpt.sh: time of one full training step of
the dense GPT, MoD, MoB, MoE or MoR (zero_grad, forward, objective, backward, AdamW
step), f32, on the CPU or a GPU — and the same-work check against dyngrad.

    /usr/bin/python3 bench/torch_gpt.py --model dense|mod|mob|moe|mor|mor-token --config tiny|small|gpt2
                                        [--steps 20] [--warmup 3] [--threads 2]
                                        [--weights FILE.safetensors]
                                        [--device cpu|cuda[:N]] [--sdpa]
    /usr/bin/python3 bench/torch_gpt.py --check FILE.safetensors [--rtol 1e-9]

Configs (the same as build/bench/bench_gpt_step):
  tiny:  L=4 (MoB: n=4 blocks), H=4, C=128, block_size=128, batch B=16 of T=128
  small: L=6 (MoB: n=6 blocks), H=6, C=384, block_size=256, batch B=8 of T=256
  gpt2:  L=12 (MoB: n=12 blocks), H=12, C=768, block_size=1024, batch B=8 of
         T=1024 (GPT-2 small's shape with the byte vocabulary; a GPU config)
  mod: capacity 0.125, every other block routed, raw router weight, aux +
       predictor BCE; mob: max_depth 6, ponder halting, scope step, gate_init
       uniform (see the header of bench/bench_gpt_step.cpp for why); moe: 4
       experts in every block, top-2, capacity factor 1.0, balance 0.01,
       z-loss 1e-3; mor: a cycle of L/2 blocks over N_r = 3 recursions,
       expert-choice, capacity 0.5; mor-token: the same with the token-choice
       router.

--weights FILE: a file written by `bench_gpt_step --save-init FILE` (f32): the
model kind and config are taken from its metadata (and must agree with
--model / --config), the initial weights from param.<name>, and the first
steps run on its batches (batches.x / batches.y when the file has them, as
`--batches K` writes them: the very batches dyngrad's timing draws; else just
x, y). Without it: GPT-2 init from torch.manual_seed(0) and the config above.
Further batches: random bytes from a torch generator seeded 1234, drawn
outside the timed region. Each step is timed with
time.perf_counter; the result is the median over the steps after warm-up.

--device cuda (default cpu): the model and every batch live on the GPU (the
batches are drawn on the CPU as above and copied before the timed region);
TF32 is enabled for matmuls and cuDNN (torch.backends.cuda.matmul.allow_tf32,
torch.backends.cudnn.allow_tf32), as dyngrad's DG_TF32=1; the device is
synchronized before and after each timed step, and the JSON line adds
peak_gpu_allocated_mb / peak_gpu_reserved_mb (torch.cuda.max_memory_allocated
/ max_memory_reserved). --sdpa computes the dense and MoD attention with
F.scaled_dot_product_attention (fused, never T x T) instead of the explicit
reference product: the fastest eager PyTorch.

--check FILE: a file written by `bench_gpt_step --dtype f64 --save-init FILE`.
Builds the same model in f64 from the file's config and weights, computes the
training objective on the file's batch and its gradients, and compares with
what dyngrad wrote: objective and LM loss within --rtol (relative), every
parameter gradient within --grad-rtol of that tensor's largest magnitude, and
for MoB every token's route (block per step, halting step) exactly, for MoE
every assignment's expert (and which were dropped) in every MoE layer, for
MoR the recursions every token ran. Prints one
JSON line with the differences; exits 1 (with the reason on stderr) when any
check fails.

Prints ONE JSON line, e.g.
  {"impl": "pytorch", "model": "mob", "config": "tiny", "median_step_ms": ...,
   "tokens_per_s": ..., "peak_rss_mb": ..., "steps": ...}
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_models import (CausalSelfAttention, GPTConfig, MoBConfig, MoDConfig, MoEConfig, MoRConfig,  # noqa: E402
                          adamw_param_groups, config_from_json, load_state, make_torch_model, read_safetensors)

# name -> (dense model config, batch size, sequence length)
CONFIGS = {
    "tiny": (GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=128), 16, 128),
    "small": (GPTConfig(n_layer=6, n_head=6, n_embd=384, block_size=256), 8, 256),
    "gpt2": (GPTConfig(n_layer=12, n_head=12, n_embd=768, block_size=1024), 8, 1024),
}
MODELS = ("dense", "mod", "mob", "moe", "mor", "mor-token")


def base_kind(model):
    """The dyngrad model kind of a --model name (mor-token is kind mor)."""
    return "mor" if model == "mor-token" else model


def default_config(model, gpt):
    """The benchmark's config of `model` around the dense config `gpt`."""
    if model == "dense":
        return gpt
    if model == "mod":
        return MoDConfig(gpt=gpt)
    if model == "moe":
        return MoEConfig(gpt=gpt, n_experts=4, top_k=2, capacity_factor=1.0)
    if model in ("mor", "mor-token"):
        return MoRConfig(gpt=gpt, cycle=gpt.n_layer // 2, router="token" if model == "mor-token" else "expert")
    return MoBConfig(gpt=gpt, n_blocks=gpt.n_layer, gate_init="uniform")


def parse_args():
    """Command-line flags (the same as bench_gpt_step's, plus --check)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=MODELS, default=None, help="dense | mod | mob | moe | mor | mor-token (default dense)")
    p.add_argument("--config", choices=sorted(CONFIGS), default=None, help="tiny | small | gpt2 (default tiny)")
    p.add_argument("--steps", type=int, default=20, help="timed steps (after warm-up)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--device", default="cpu", help="cpu (default) | cuda | cuda:N")
    p.add_argument("--sdpa", action="store_true",
                   help="attention through F.scaled_dot_product_attention (dense, MoD)")
    p.add_argument("--weights", default=None, help="bench_gpt_step --save-init file (f32) to start from")
    p.add_argument("--check", default=None, metavar="FILE",
                   help="bench_gpt_step --dtype f64 --save-init file: check the same loss, no timing")
    p.add_argument("--rtol", type=float, default=1e-9, help="--check: relative tolerance of the losses")
    p.add_argument("--grad-rtol", type=float, default=1e-8,
                   help="--check: gradient tolerance, relative to each tensor's largest |grad|")
    args = p.parse_args()
    if args.steps < 1 or args.warmup < 0 or args.threads < 1:
        p.error("need --steps >= 1, --warmup >= 0, --threads >= 1")
    if args.check and args.weights:
        p.error("--check and --weights are exclusive")
    if args.device != "cpu" and not args.device.startswith("cuda"):
        p.error(f"--device {args.device}: expected cpu, cuda or cuda:N")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error(f"--device {args.device}: torch {torch.__version__} sees no CUDA device")
    if args.sdpa and not hasattr(torch.nn.functional, "scaled_dot_product_attention"):
        p.error(f"--sdpa needs torch 2.0 or later (F.scaled_dot_product_attention); this is {torch.__version__}")
    return args


def model_from_file(path, want_model, want_config, dtype):
    """(model, config name, x, y, tensors) from a bench_gpt_step --save-init file,
    checking its kind, config name and dtype against what was asked."""
    try:
        tensors, meta = read_safetensors(path)
    except (OSError, ValueError) as e:
        sys.exit(f"torch_gpt.py: error: cannot read {path}: {e}")
    for key in ("model_kind", "model_config", "config", "dtype"):
        if key not in meta:
            sys.exit(f"torch_gpt.py: error: {path}: no metadata '{key}' (not a bench_gpt_step --save-init file)")
    kind, config = meta["model_kind"], meta["config"]
    if want_model and kind != base_kind(want_model):
        sys.exit(f"torch_gpt.py: error: {path} holds a {kind} model, --model says {want_model}")
    if want_config and config != want_config:
        sys.exit(f"torch_gpt.py: error: {path} holds config {config}, --config says {want_config}")
    if meta["dtype"] != dtype:
        sys.exit(f"torch_gpt.py: error: {path} is {meta['dtype']}; this mode needs {dtype}")
    try:
        cfg, _ = config_from_json(kind, meta["model_config"])
        torch.manual_seed(0)
        model = make_torch_model(kind, cfg).to(torch.float64 if dtype == "f64" else torch.float32)
        load_state(model, path, prefix="param.")
    except ValueError as e:
        sys.exit(f"torch_gpt.py: error: {path}: {e}")
    for key in ("x", "y"):
        if key not in tensors:
            sys.exit(f"torch_gpt.py: error: {path}: no tensor '{key}' (the first batch)")
    x, y = (torch.from_numpy(tensors[k]) for k in ("x", "y"))
    return model, kind, config, x, y, tensors


def rel(a, b):
    """|a - b| / |b| (|a - b| when b is 0)."""
    return abs(a - b) / abs(b) if b != 0 else abs(a - b)


def check(args):
    """The same-work check (see the module docstring); returns the exit code."""
    model, kind, config, x, y, ref = model_from_file(args.check, args.model, args.config, "f64")
    model.train()
    _, objective = model(x, y)
    objective.backward()
    got_obj = objective.item()
    got_lm = model.last_lm.item() if kind in ("mod", "moe", "mor") else got_obj
    want_obj, want_lm = float(ref["objective"]), float(ref["lm"])
    failures = []
    d_obj, d_lm = rel(got_obj, want_obj), rel(got_lm, want_lm)
    if not d_obj <= args.rtol:
        failures.append(f"objective {got_obj!r} vs dyngrad {want_obj!r}: relative difference {d_obj:.3e} > {args.rtol}")
    if not d_lm <= args.rtol:
        failures.append(f"LM loss {got_lm!r} vs dyngrad {want_lm!r}: relative difference {d_lm:.3e} > {args.rtol}")
    worst, worst_name = 0.0, None
    for name, p in model.named_parameters():
        g_ref = ref.get("grad." + name)
        if g_ref is None:
            failures.append(f"the file has no grad.{name}")
            continue
        g_ref = torch.from_numpy(g_ref)
        if p.grad is None:
            failures.append(f"{name} got no gradient in PyTorch")
            continue
        scale = g_ref.abs().max().item()
        d = (p.grad - g_ref).abs().max().item() / (scale if scale > 0 else 1.0)
        if d > worst or worst_name is None:
            worst, worst_name = d, name
        if not d <= args.grad_rtol:
            failures.append(f"grad.{name}: max difference {d:.3e} of its largest |grad| {scale:.3e} > {args.grad_rtol}")
    paths_mismatch = None
    if kind in ("mob", "moe", "mor"):
        # MoB: per token (B*T, max_depth + 1) the block of each step; MoR: per
        # token (B*T, N_r) whether it ran each recursion; MoE: per MoE layer
        # (layers, B*T, k) the expert of each assignment, -1 dropped.
        key, got = ("route.experts", model.last_routes) if kind == "moe" else ("route.paths", model.last_paths)
        if key not in ref:
            failures.append(f"the file has no {key}")
        else:
            want = torch.from_numpy(ref[key])
            if want.shape != got.shape:
                failures.append(f"{key} shape {list(want.shape)} vs {list(got.shape)}")
            else:
                differs = want != got
                differs = differs.any(dim=2).any(dim=0) if kind == "moe" else differs.any(dim=1)  # per token
                paths_mismatch = int(differs.sum())
                if paths_mismatch:
                    failures.append(f"{paths_mismatch} tokens took a different route than in dyngrad")
    depth = None
    if kind == "mob":
        depth = float((model.last_paths >= 0).sum(dim=1).double().mean())
    if kind == "mor":  # block applications per token
        depth = float(model.last_paths.sum(dim=1).double().mean()) * model.mcfg.cycle
    result = {"impl": "pytorch", "check": True, "model": args.model or kind, "config": config, "dtype": "f64",
              "objective": got_obj, "objective_dyngrad": want_obj, "objective_rel_diff": d_obj,
              "lm_rel_diff": d_lm, "grad_max_rel_diff": worst, "grad_worst": worst_name,
              "paths_mismatch": paths_mismatch, "mean_depth": depth, "ok": not failures}
    print(json.dumps(result))
    for f in failures[:10]:
        print(f"torch_gpt.py: check failed ({kind} {config}): {f}", file=sys.stderr)
    if len(failures) > 10:
        print(f"torch_gpt.py: check failed ({kind} {config}): ... and {len(failures) - 10} more", file=sys.stderr)
    return 1 if failures else 0


def train_step(model, opt, idx, targets):
    """One full training step; returns the objective (a 0-dim tensor, not read
    back to the host, so a GPU step is not synchronised here)."""
    opt.zero_grad(set_to_none=True)
    _, loss = model(idx, targets)
    loss.backward()
    opt.step()
    return loss.detach()


def synchronize(device):
    """Waits for the GPU's queued work (nothing on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main():
    """Runs the check, or warm-up and timed steps, and prints the JSON line."""
    args = parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    CausalSelfAttention.use_sdpa = args.sdpa
    if args.check:
        sys.exit(check(args))
    saved = []  # the batches of the first steps, from the file
    if args.weights:
        model, kind, config, x, y, tensors = model_from_file(args.weights, args.model, args.config, "f32")
        if "batches.x" in tensors and "batches.y" in tensors:
            bx, by = torch.from_numpy(tensors["batches.x"]), torch.from_numpy(tensors["batches.y"])
            if bx.shape != by.shape or bx.dim() != 3 or not torch.equal(bx[0], x) or not torch.equal(by[0], y):
                sys.exit(f"torch_gpt.py: error: {args.weights}: batches.x / batches.y do not fit x, y")
            saved = list(zip(bx, by))
        else:
            saved = [(x, y)]
    else:
        name, config = args.model or "dense", args.config or "tiny"
        kind = base_kind(name)
        torch.manual_seed(0)
        model = make_torch_model(kind, default_config(name, CONFIGS[config][0]))
    _, batch, seq = CONFIGS[config]
    if saved and tuple(saved[0][0].shape) != (batch, seq):
        sys.exit(f"torch_gpt.py: error: {args.weights}: batch {list(saved[0][0].shape)}, config {config} "
                 f"needs {[batch, seq]}")
    vocab = model.cfg.vocab_size
    model.to(device)
    model.train()
    opt = torch.optim.AdamW(adamw_param_groups(model, 0.1), lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    gen = torch.Generator().manual_seed(1234)

    times = []
    loss = float("nan")
    for step in range(args.warmup + args.steps):
        if step < len(saved):
            idx, targets = saved[step]
        else:
            idx = torch.randint(0, vocab, (batch, seq), generator=gen, dtype=torch.int64)
            targets = torch.randint(0, vocab, (batch, seq), generator=gen, dtype=torch.int64)
        idx, targets = idx.to(device), targets.to(device)
        synchronize(device)
        if step == args.warmup and device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        loss = train_step(model, opt, idx, targets)
        synchronize(device)
        elapsed = time.perf_counter() - t0
        if step >= args.warmup:
            times.append(elapsed)
        # The plain LM loss, like dyngrad's final_loss (read outside the timing).
        loss = (model.last_lm if kind in ("mod", "moe", "mor") else loss).item()

    median_s = statistics.median(times)
    result = {
        "impl": "pytorch",
        "model": args.model or kind,
        "config": config,
        "median_step_ms": round(median_s * 1e3, 3),
        "tokens_per_s": round(batch * seq / median_s, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "steps": args.steps,
        "threads": args.threads,
        "final_loss": round(loss, 4),
        "weights": "dyngrad file" if args.weights else "torch init",
        "batches_from_file": min(len(saved), args.warmup + args.steps),
        "torch_version": torch.__version__,
        "device": str(device),
    }
    if device.type == "cuda":
        result["peak_gpu_allocated_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        result["peak_gpu_reserved_mb"] = round(torch.cuda.max_memory_reserved(device) / 2**20, 1)
        result["tf32"] = True
        result["sdpa"] = args.sdpa
        result["gpu"] = torch.cuda.get_device_name(device)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
