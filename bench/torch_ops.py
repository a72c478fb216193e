#!/usr/bin/python3
"""The PyTorch side of bench/compare.sh: the cases of bench_ops.cpp and
bench_nn.cpp, measured the same way in torch (f32, CPU, 2 threads), and the
4-op chain of bench/bench_cuda.cpp.

    /usr/bin/python3 bench/torch_ops.py [--json out.json] [--reps N] [--filter SUBSTRING]
                                        [--device cpu|cuda[:N]]

Each case runs `reps` repetitions of `n` iterations (n chosen so that one
repetition takes about 0.1 s) and reports the median time per iteration. The
timings include the Python interpreter's cost of issuing each call: that is
what a PyTorch user pays per op, and it dominates the two tiny cases.
The bench_ops cases that call backward() drop the gradients each iteration
(x.grad = None), as the C++ side does (x.zero_grad()).

--device cuda (torch 2.x): every case's tensors are made on the GPU
(torch.set_default_device), TF32 is on for matmuls, and each repetition ends
with torch.cuda.synchronize(), so a time per call is the steady-state cost of
issuing the call and of running it, whichever is larger. For the small cases
that is the host's cost per op (the GPU's kernels take less).
"""
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(2)
torch.manual_seed(0)

DEVICE = "cpu"  # --device

# The nn shapes: (B, T, C, H) as in bench/bench_nn.cpp.
NN_SHAPES = [(16, 128, 128, 4), (8, 256, 384, 6)]


def synchronize():
    """Waits for queued GPU work when the cases run on a GPU."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed(fn, reps, target_s=0.1):
    """Median seconds per call of fn over `reps` repetitions (after a warm-up)."""
    fn()
    synchronize()
    t0 = time.perf_counter()
    fn()
    synchronize()
    one = max(time.perf_counter() - t0, 1e-7)
    n = max(1, int(target_s / one))
    per_call = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        synchronize()
        per_call.append((time.perf_counter() - t0) / n)
    return statistics.median(per_call)


# --- bench_ops.cpp ------------------------------------------------------------

def add_overhead():
    a = torch.randn(16, requires_grad=True)
    b = torch.randn(16, requires_grad=True)
    return lambda: a + b


def tiny_forward_backward():
    x = torch.randn(16, requires_grad=True)

    def step():
        torch.tanh(x * x + x).sum().backward()
        x.grad = None
    return step


def chain4_forward_backward(n):
    """bench_cuda.cpp's BM_Chain4: sum(tanh(x * y + x)) and its backward on
    (n, n): 4 forward ops (mul, add, tanh, sum) plus their backward."""
    x = torch.randn(n, n, requires_grad=True)
    y = torch.randn(n, n)

    def step():
        torch.tanh(x * y + x).sum().backward()
        x.grad = None
    return step


def matmul(n):
    a, b = torch.randn(n, n), torch.randn(n, n)

    def step():
        with torch.no_grad():
            torch.matmul(a, b)
    return step


def gelu_forward_backward():
    x = torch.randn(2048, 512, requires_grad=True)
    w = torch.randn(2048, 512)

    def step():
        F.gelu(x, approximate="tanh").backward(w)
        x.grad = None
    return step


# --- bench_nn.cpp: fused kernels, forward and forward+backward ------------------
# softmax, layer_norm, cross_entropy on (B*T, C) rows (vocab = C); attention
# causal on q, k, v (B, H, T, C/H). Forward+backward is one forward and
# torch.autograd.grad of all inputs with a fixed output gradient, as bench_nn
# does with dg::grad.

def fwd_or_fwd_bwd(fn, inputs, backward):
    y = fn(*inputs)
    gy = torch.randn(y.shape) if y.numel() > 1 else None
    if not backward:
        return lambda: fn(*inputs)
    return lambda: torch.autograd.grad(fn(*inputs), inputs, gy)


def softmax_case(B, T, C, H, backward):
    x = torch.randn(B * T, C, requires_grad=True)
    return fwd_or_fwd_bwd(lambda x: torch.softmax(x, -1), [x], backward)


def layer_norm_case(B, T, C, H, backward):
    x = torch.randn(B * T, C, requires_grad=True)
    w, b = torch.randn(C, requires_grad=True), torch.randn(C, requires_grad=True)
    return fwd_or_fwd_bwd(lambda x, w, b: F.layer_norm(x, (C,), w, b, 1e-5), [x, w, b], backward)


def cross_entropy_case(B, T, C, H, backward):
    x = torch.randn(B * T, C, requires_grad=True)
    target = torch.randint(0, C, (B * T,))
    return fwd_or_fwd_bwd(lambda x: F.cross_entropy(x, target), [x], backward)


def causal_attention(q, k, v, mask):
    # q, k, v (B, H, T, D). torch 1.13 has no F.scaled_dot_product_attention:
    # the explicit form (nanoGPT's slow path) with a precomputed causal mask.
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.size(-1)))
    att = att.masked_fill(mask, float("-inf"))
    return torch.softmax(att, dim=-1) @ v


def attention_case(B, T, C, H, backward):
    q, k, v = (torch.randn(B, H, T, C // H, requires_grad=True) for _ in range(3))
    mask = torch.ones(T, T, dtype=torch.bool).triu(1)
    return fwd_or_fwd_bwd(lambda q, k, v: causal_attention(q, k, v, mask), [q, k, v], backward)


def cases():
    """(name, factory, flops per call or None); names are the Google Benchmark
    names of bench_ops.cpp / bench_nn.cpp, so compare.sh pairs them directly."""
    out = [
        ("BM_AddOverhead16", add_overhead, None),
        ("BM_TinyForwardBackward16", tiny_forward_backward, None),
        ("BM_Matmul/1024", lambda: matmul(1024), 2.0 * 1024 ** 3),
        ("BM_GeluForwardBackward", gelu_forward_backward, None),
    ]
    if DEVICE != "cpu":  # bench_cuda.cpp's case; the CPU side (compare.sh) has no such case
        out.append(("BM_Chain4/64", lambda: chain4_forward_backward(64), None))
    for op, make in (("softmax", softmax_case), ("layer_norm", layer_norm_case),
                     ("cross_entropy", cross_entropy_case), ("attention", attention_case)):
        for (B, T, C, H) in NN_SHAPES:
            for backward in (False, True):
                name = f"BM_{op}_{'fwd_bwd' if backward else 'fwd'}/{B}x{T}x{C}"
                out.append((name, lambda make=make, s=(B, T, C, H), bw=backward: make(*s, bw), None))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", help="write {name: {median_s, gflops}} here")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--filter", default="", help="only cases whose name contains this")
    ap.add_argument("--device", default="cpu", help="cpu (default) | cuda | cuda:N")
    args = ap.parse_args()
    global DEVICE
    DEVICE = args.device
    if args.device != "cpu":
        if not args.device.startswith("cuda") or not torch.cuda.is_available():
            ap.error(f"--device {args.device}: torch {torch.__version__} sees no such device")
        if not hasattr(torch, "set_default_device"):
            ap.error(f"--device {args.device} needs torch 2.0 or later; this is {torch.__version__}")
        torch.set_default_device(args.device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    results = {}
    for name, make, flops in cases():
        if args.filter not in name:
            continue
        t = timed(make(), args.reps)
        results[name] = {"median_s": t}
        extra = ""
        if flops:
            results[name]["gflops"] = flops / t / 1e9
            extra = f"  {flops / t / 1e9:.1f} GFLOP/s"
        print(f"{name:<36} {t * 1e6:12.2f} us{extra}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch_version": torch.__version__, "threads": torch.get_num_threads(), "reps": args.reps,
                       "device": args.device, "cases": results}, f, indent=1)


if __name__ == "__main__":
    main()
