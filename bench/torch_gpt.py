#!/usr/bin/python3
"""The PyTorch side of bench/compare_gpt.sh: time of one full training step of
the dense GPT (zero_grad, forward, loss, backward, AdamW step), f32, CPU.

    /usr/bin/python3 bench/torch_gpt.py --config tiny|small [--steps 20] [--warmup 3]
                                        [--threads 2] [--weights FILE.safetensors]

Configs (the same as build/bench/bench_gpt_step):
  tiny:  L=4, H=4, C=128, block_size=128, batch B=16 of T=128 tokens
  small: L=6, H=6, C=384, block_size=256, batch B=8 of T=256 tokens
Weights: GPT-2 init from torch.manual_seed(0), or a dyngrad-written
safetensors file (--weights). Batches: random bytes from a generator seeded
1234, drawn outside the timed region. Each step is timed with
time.perf_counter; the result is the median over the steps after warm-up.

Prints ONE JSON line:
  {"impl": "pytorch", "model": "dense", "config": "tiny", "median_step_ms": ...,
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
from torch_models import GPTConfig, TorchGPT, adamw_param_groups, load_state  # noqa: E402

# name -> (model config, batch size, sequence length)
CONFIGS = {
    "tiny": (GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=128), 16, 128),
    "small": (GPTConfig(n_layer=6, n_head=6, n_embd=384, block_size=256), 8, 256),
}


def parse_args():
    """Command-line flags (the same as bench_gpt_step's)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", choices=sorted(CONFIGS), default="tiny")
    p.add_argument("--steps", type=int, default=20, help="timed steps (after warm-up)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--weights", default=None, help="dyngrad safetensors weights to start from")
    args = p.parse_args()
    if args.steps < 1 or args.warmup < 0 or args.threads < 1:
        p.error("need --steps >= 1, --warmup >= 0, --threads >= 1")
    return args


def train_step(model, opt, idx, targets):
    """One full training step; returns the loss as a float."""
    opt.zero_grad(set_to_none=True)
    _, loss = model(idx, targets)
    loss.backward()
    opt.step()
    return loss.item()


def main():
    """Runs warm-up and timed steps and prints the JSON line."""
    args = parse_args()
    torch.set_num_threads(args.threads)
    cfg, batch, seq = CONFIGS[args.config]
    torch.manual_seed(0)
    model = TorchGPT(cfg)
    if args.weights:
        load_state(model, args.weights)
    model.train()
    opt = torch.optim.AdamW(adamw_param_groups(model, 0.1), lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    gen = torch.Generator().manual_seed(1234)

    times = []
    loss = float("nan")
    for step in range(args.warmup + args.steps):
        idx = torch.randint(0, cfg.vocab_size, (batch, seq), generator=gen, dtype=torch.int64)
        targets = torch.randint(0, cfg.vocab_size, (batch, seq), generator=gen, dtype=torch.int64)
        t0 = time.perf_counter()
        loss = train_step(model, opt, idx, targets)
        elapsed = time.perf_counter() - t0
        if step >= args.warmup:
            times.append(elapsed)

    median_s = statistics.median(times)
    result = {
        "impl": "pytorch",
        "model": "dense",
        "config": args.config,
        "median_step_ms": round(median_s * 1e3, 3),
        "tokens_per_s": round(batch * seq / median_s, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "steps": args.steps,
        "threads": args.threads,
        "final_loss": round(loss, 4),
        "torch_version": torch.__version__,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
