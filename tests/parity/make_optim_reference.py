#!/usr/bin/python3
"""PyTorch reference trajectories for the optimizers of nn/optim.h.

Run with Debian's interpreter (the one that imports torch):

    /usr/bin/python3 tests/parity/make_optim_reference.py [tests/parity/optim_reference.json]

Three parameters of different shapes start from fixed values; a fixed
sequence of 10 gradients is fed to each optimizer case (torch.optim,
foreach=False), in f64 and in f32, and the parameter values after every step
are recorded. A case may skip parameters at some steps (grad = None: torch
leaves the parameter and its state alone) and may set the lr before every
step (the warmup-cosine schedule of nn/optim.h, re-implemented below).
clip_grad_norm_ results are recorded for a few max_norm values.
tests/test_optim.cpp replays the same cases in dyngrad and compares.

Every number comes from a fixed seed, so regenerating gives the identical
file. Floats are written with repr (full precision); f32 values are the
exact f32 numbers widened to f64.

Layout:
  {"shapes": [[3,4], [5], [2,3,2]], "steps": 10,
   "f64": {"params": [[...] per param], "grads": [[[...] per param] per step]},
   "f32": {...same...},
   "cases": [{"name", "optimizer": "sgd"|"adamw", "hyper": {...},
              "groups": [{"params": [i...], "weight_decay": wd}] | null,
              "skip": [[step, param], ...], "lrs": [lr per step] | null,
              "f64": [[[...] per param] per step], "f32": ...}],
   "clip": [{"max_norm", "f64": {"norm", "grads": [...]}, "f32": {...}}]}
"""
import json
import math
import sys

import torch

SHAPES = [(3, 4), (5,), (2, 3, 2)]
STEPS = 10


def warmup_cosine_lr(step, warmup, total, max_lr, min_lr):
    """Same formula as nn::warmup_cosine_lr."""
    if step < warmup:
        return max_lr * (step + 1) / warmup
    if step >= total:
        return min_lr
    progress = (step - warmup) / (total - warmup)
    return min_lr + (max_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def flat(t):
    return [float(x) for x in t.detach().to(torch.float64).reshape(-1).tolist()]


def make_data():
    g = torch.Generator().manual_seed(1234)
    params = [torch.randn(s, generator=g, dtype=torch.float64) for s in SHAPES]
    # Gradients of varied scale per step, so Adam's moments see real changes.
    grads = [[torch.randn(s, generator=g, dtype=torch.float64) * (0.5 + 0.25 * k) for s in SHAPES]
             for k in range(STEPS)]
    return params, grads


CASES = [
    dict(name="sgd_momentum", optimizer="sgd", hyper=dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    dict(name="sgd_nesterov", optimizer="sgd",
         hyper=dict(lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True)),
    dict(name="sgd_dampening_skip", optimizer="sgd",
         hyper=dict(lr=0.05, momentum=0.8, dampening=0.3), skip=[[0, 1], [4, 2], [5, 2]]),
    dict(name="sgd_plain", optimizer="sgd", hyper=dict(lr=0.1)),
    dict(name="adamw", optimizer="adamw", hyper=dict(lr=1e-2, weight_decay=0.1)),
    dict(name="adamw_groups", optimizer="adamw", hyper=dict(lr=1e-2),
         groups=[dict(params=[0, 2], weight_decay=0.1), dict(params=[1], weight_decay=0.0)]),
    dict(name="adamw_skip_schedule", optimizer="adamw",
         hyper=dict(lr=1e-2, betas=[0.8, 0.95], eps=1e-6, weight_decay=0.05),
         skip=[[2, 1], [5, 1], [0, 2]],
         lrs=[warmup_cosine_lr(k, 3, 10, 1e-2, 1e-3) for k in range(STEPS)]),
]


def run_case(case, params0, grads, dtype):
    params = [p.clone().to(dtype).requires_grad_(True) for p in params0]
    h = dict(case["hyper"])
    if "betas" in h:
        h["betas"] = tuple(h["betas"])
    if case.get("groups"):
        spec = [dict(params=[params[i] for i in g["params"]], weight_decay=g["weight_decay"])
                for g in case["groups"]]
    else:
        spec = params
    if case["optimizer"] == "sgd":
        opt = torch.optim.SGD(spec, foreach=False, **h)
    else:
        opt = torch.optim.AdamW(spec, foreach=False, **h)
    skip = {tuple(s) for s in case.get("skip", [])}
    out = []
    for k in range(STEPS):
        if case.get("lrs"):
            for group in opt.param_groups:
                group["lr"] = case["lrs"][k]
        for i, p in enumerate(params):
            p.grad = None if (k, i) in skip else grads[k][i].to(dtype).clone()
        opt.step()
        out.append([flat(p) for p in params])
    return out


def run_clip(max_norm, grads, dtype):
    params = [torch.zeros(s, dtype=dtype, requires_grad=True) for s in SHAPES]
    for p, g in zip(params, grads):
        p.grad = g.to(dtype).clone()
    params[1].grad = None  # a parameter without grad takes no part
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    return dict(norm=float(norm), grads=[flat(p.grad) if p.grad is not None else None for p in params])


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/parity/optim_reference.json"
    torch.set_num_threads(1)
    params0, grads = make_data()
    ref = dict(shapes=[list(s) for s in SHAPES], steps=STEPS)
    for name, dt in (("f64", torch.float64), ("f32", torch.float32)):
        ref[name] = dict(params=[flat(p.to(dt)) for p in params0],
                         grads=[[flat(g.to(dt)) for g in step] for step in grads])
    cases = []
    for case in CASES:
        c = dict(case)
        c.setdefault("groups", None)
        c.setdefault("skip", [])
        c.setdefault("lrs", None)
        c["f64"] = run_case(case, params0, grads, torch.float64)
        c["f32"] = run_case(case, params0, grads, torch.float32)
        cases.append(c)
    ref["cases"] = cases
    clip_grads = [g * 3.0 for g in grads[0]]
    ref["clip"] = [dict(max_norm=m, f64=run_clip(m, clip_grads, torch.float64),
                        f32=run_clip(m, clip_grads, torch.float32)) for m in (1.0, 2.5, 1000.0)]
    with open(path, "w") as f:
        json.dump(ref, f)
        f.write("\n")


if __name__ == "__main__":
    main()
