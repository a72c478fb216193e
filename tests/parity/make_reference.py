#!/usr/bin/python3
"""PyTorch reference values for every op of autograd/ops.h.

Run with Debian's interpreter (the one that imports torch):

    /usr/bin/python3 tests/parity/make_reference.py [tests/parity/reference.json]

For every case it computes with torch, in f64 and in f32, the forward outputs
and the gradients of  loss = sum_j sum(out_j * w_j)  with respect to every
floating input (w_j fixed per output). tests/test_parity.cpp runs the same op
in dyngrad on the same inputs and compares, so the C++ test needs no torch.

Inputs are exact in both dtypes: every float is a multiple of 2^-10 in a small
range, so it has a short exact decimal form, f32(x) == f64(x), and the f32 and
f64 cases see the very same numbers. The floats of one case are all distinct
(drawn without replacement), so max/min/topk/maximum never meet a tie, and 0
is never drawn (abs and relu are not differentiable there). Every number comes
from a generator seeded by the case name: regenerating gives the identical
file, byte for byte.

File layout (one case per line):
  {"cases": [
    {"name": "unary/exp", "family": "unary", "op": "exp", "params": {...},
     "inputs":  [{"shape": [3,4], "kind": "float"|"i64"|"bool", "grad": true,
                  "data": [...], "grad_f64": [...], "grad_f32": [...]}],
     "outputs": [{"shape": [3,4], "kind": "float"|"i64", "w": [...],
                  "f64": [...], "f32": [...]}]}, ...]}
"""
import json
import math
import os
import sys
import zlib

import numpy as np
import torch
import torch.nn.functional as F

torch.set_num_threads(1)  # one summation order: the file must not depend on the thread count
STEP = 1.0 / 1024  # grid of the inputs


# --- deterministic inputs -------------------------------------------------

class Inputs:
    """Draws the inputs of one case from a generator seeded by its name."""

    def __init__(self, name):
        self.rng = np.random.default_rng(zlib.crc32(name.encode()))
        self.used = set()

    def floats(self, shape, lo=-2.0, hi=2.0):
        """Distinct nonzero multiples of 2^-10 in [lo, hi], none used before in this case."""
        n = int(np.prod(shape, dtype=np.int64))
        grid = np.arange(round(lo / STEP), round(hi / STEP) + 1, dtype=np.int64)
        grid = grid[(grid != 0) & ~np.isin(grid, list(self.used))]
        picked = self.rng.choice(grid, size=n, replace=False)
        self.used.update(int(v) for v in picked)
        return (picked.astype(np.float64) * STEP).reshape(shape)

    def ints(self, shape, lo, hi):
        """Integers in [lo, hi)."""
        return self.rng.integers(lo, hi, size=shape, dtype=np.int64)

    def bools(self, shape):
        return self.rng.integers(0, 2, size=shape).astype(bool)


def fl(shape, lo=-2.0, hi=2.0, grad=True):
    return ("float", shape, lo, hi, grad)


def i64(values):
    return ("i64", np.asarray(values, dtype=np.int64))


def rand_i64(shape, lo, hi):
    return ("rand_i64", shape, lo, hi)


def bools(shape):
    return ("bool", shape)


# --- the op table: (family, op, params, input specs, torch function) ----------
# The torch function takes the torch inputs and the params and returns a tuple
# of outputs. Names and params are read by tests/test_parity.cpp.

def rms_norm_torch(x, w, eps):
    # torch 1.13 has no rms_norm: x / sqrt(mean(x^2) + eps) * w over the last dim
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def attention_torch(q, k, v, causal, scale):
    # What F.scaled_dot_product_attention computes (torch >= 2.0):
    # softmax(q k^T * scale, masked above the diagonal) v, per (batch, head).
    # q, k, v (B, H, T, D); scale 0 means 1/sqrt(D).
    scale = scale if scale != 0 else 1.0 / math.sqrt(q.shape[-1])
    att = (q @ k.transpose(-2, -1)) * scale
    if causal:
        T = q.shape[-2]
        mask = torch.ones(T, T, dtype=torch.bool).triu(1)
        att = att.masked_fill(mask, float("-inf"))
    return torch.softmax(att, dim=-1) @ v


def grouped_torch(fn, x, offsets, per_group):
    # rows [offsets[k], offsets[k+1]) of x through fn(rows, *per_group[k]), concatenated
    return torch.cat([fn(x[offsets[k]:offsets[k + 1]], *per_group[k]) for k in range(len(offsets) - 1)], 0)


def grouped_linear_torch(x, *wb, p):
    # inputs: x, then per group weight (and bias when p["bias"])
    step = 2 if p["bias"] else 1
    groups = [(wb[i], wb[i + 1] if p["bias"] else None) for i in range(0, len(wb), step)]
    return grouped_torch(lambda r, w, b: F.linear(r, w, b), x, p["offsets"], groups)


def grouped_layer_norm_torch(x, *wb, p):
    groups = [(wb[i], wb[i + 1]) for i in range(0, len(wb), 2)]
    return grouped_torch(lambda r, w, b: F.layer_norm(r, (r.shape[-1],), w, b, p["eps"]), x, p["offsets"], groups)


def attention_varlen_torch(q, k, v, cu, scale):
    # q, k, v (H, N, D); sequence s is rows [cu[s], cu[s+1]), causal within itself
    outs = []
    for s in range(len(cu) - 1):
        a, b = int(cu[s]), int(cu[s + 1])
        if b > a:
            outs.append(attention_torch(q[None, :, a:b], k[None, :, a:b], v[None, :, a:b], True, scale)[0])
    return torch.cat(outs, 1)


def attention_qkv_torch(qkv, n_head, scale, cu=None):
    # qkv (B, T, 3C) or packed (N, 3C); per token [q | k | v], head h at columns h*D..(h+1)*D of each third
    C = qkv.shape[-1] // 3
    heads = lambda t: t.reshape(*t.shape[:-1], n_head, C // n_head).transpose(-3, -2)  # (..., H, T, D)
    q, k, v = (heads(t) for t in qkv.split(C, -1))
    if cu is None:
        out = attention_torch(q, k, v, True, scale)
    else:
        out = attention_varlen_torch(q, k, v, cu, scale)
    return out.transpose(-3, -2).reshape(*qkv.shape[:-1], C)


def cross_entropy_torch(logits, target, p):
    # dyngrad takes logits (..., V) with target (...); torch wants (N, V).
    V = logits.shape[-1]
    red = p["reduction"]
    loss = F.cross_entropy(logits.reshape(-1, V), target.reshape(-1), ignore_index=p["ignore_index"],
                           label_smoothing=p["label_smoothing"], reduction=red)
    return loss.reshape(target.shape) if red == "none" else loss


def reduce_max_min(fn):
    def run(x, p):
        r = fn(x, dim=p["dim"], keepdim=p["keepdim"])
        return r.values, r.indices
    return run


POS = dict(lo=0.25, hi=3.0)  # domain of log, sqrt, rsqrt, pow
CLAMP_LO, CLAMP_HI = -0.5 - STEP / 2, 0.75 + STEP / 2  # off the input grid: no input sits on a bound

CASES = []


def case(family, op, specs, fn, name=None, **params):
    CASES.append(dict(family=family, op=op, name=f"{family}/{name or op}", params=params, specs=specs, fn=fn))


# unary: x (3, 5)
X = [fl((3, 5))]
XP = [fl((3, 5), **POS)]
case("unary", "neg", X, lambda x, p: -x)
case("unary", "exp", X, lambda x, p: torch.exp(x))
case("unary", "log", XP, lambda x, p: torch.log(x))
case("unary", "sqrt", XP, lambda x, p: torch.sqrt(x))
case("unary", "rsqrt", XP, lambda x, p: torch.rsqrt(x))
case("unary", "abs", X, lambda x, p: torch.abs(x))
case("unary", "tanh", X, lambda x, p: torch.tanh(x))
case("unary", "sigmoid", [fl((3, 5), -4, 4)], lambda x, p: torch.sigmoid(x))
case("unary", "relu", X, lambda x, p: torch.relu(x))
case("unary", "gelu", [fl((3, 5), -3, 3)], lambda x, p: F.gelu(x, approximate="tanh"), name="gelu_tanh",
     tanh_approx=True)
case("unary", "gelu", [fl((3, 5), -3, 3)], lambda x, p: F.gelu(x), name="gelu_erf", tanh_approx=False)
case("unary", "silu", [fl((3, 5), -4, 4)], lambda x, p: F.silu(x))
case("unary", "square", X, lambda x, p: torch.square(x))
case("unary", "pow", XP, lambda x, p: torch.pow(x, p["exponent"]), name="pow_3", exponent=3.0)
case("unary", "pow", XP, lambda x, p: torch.pow(x, p["exponent"]), name="pow_-1.5", exponent=-1.5)
case("unary", "pow", X, lambda x, p: torch.pow(x, p["exponent"]), name="pow_2_negative_base", exponent=2.0)
case("unary", "clamp", X, lambda x, p: torch.clamp(x, p["lo"], p["hi"]), lo=CLAMP_LO, hi=CLAMP_HI)

# binary with broadcasting: a (2, 3, 4) with b (3, 1) -> (2, 3, 4)
AB = [fl((2, 3, 4)), fl((3, 1))]
case("binary", "add", AB, lambda a, b, p: a + b)
case("binary", "sub", AB, lambda a, b, p: a - b)
case("binary", "mul", AB, lambda a, b, p: a * b)
case("binary", "div", [fl((2, 3, 4)), fl((3, 1), 0.25, 2.0)], lambda a, b, p: a / b)
case("binary", "pow", [fl((2, 3, 4), **POS), fl((3, 1))], lambda a, b, p: torch.pow(a, b))
case("binary", "maximum", AB, lambda a, b, p: torch.maximum(a, b))
case("binary", "minimum", AB, lambda a, b, p: torch.minimum(a, b))
# both operands broadcast: (4, 1) with (1, 5); and a 0-dim operand
case("binary", "add", [fl((4, 1)), fl((1, 5))], lambda a, b, p: a + b, name="add_outer")
case("binary", "mul", [fl((4, 1)), fl((1, 5))], lambda a, b, p: a * b, name="mul_outer")
case("binary", "sub", [fl(()), fl((2, 3))], lambda a, b, p: a - b, name="sub_0dim")
case("binary", "div", [fl((2, 3)), fl((), 0.5, 2.0)], lambda a, b, p: a / b, name="div_0dim")
case("binary", "add_scalar", [fl((2, 3))], lambda a, p: a + p["s"], s=0.75)
case("binary", "mul_scalar", [fl((2, 3))], lambda a, p: a * p["s"], s=-1.25)
# cond (3, 4) bool, a (2, 3, 4), b (4) -> (2, 3, 4)
case("binary", "where", [bools((3, 4)), fl((2, 3, 4)), fl((4,))], lambda c, a, b, p: torch.where(c, a, b))

# reductions: x (3, 4, 5)
R = [fl((3, 4, 5))]
case("reduce", "sum", R, lambda x, p: x.sum(), name="sum_all", dims=[], keepdim=False)
case("reduce", "sum", R, lambda x, p: x.sum(p["dims"], keepdim=p["keepdim"]), name="sum_1_keep", dims=[1],
     keepdim=True)
case("reduce", "sum", R, lambda x, p: x.sum(p["dims"], keepdim=p["keepdim"]), name="sum_0_2", dims=[0, 2],
     keepdim=False)
case("reduce", "mean", R, lambda x, p: x.mean(), name="mean_all", dims=[], keepdim=False)
case("reduce", "mean", R, lambda x, p: x.mean(p["dims"], keepdim=p["keepdim"]), name="mean_-1_-2_keep",
     dims=[-1, -2], keepdim=True)
case("reduce", "max_dim", R, reduce_max_min(torch.max), name="max_dim1", dim=1, keepdim=False)
case("reduce", "min_dim", R, reduce_max_min(torch.min), name="min_dim2_keep", dim=2, keepdim=True)
case("reduce", "max_all", R, lambda x, p: x.max())
case("reduce", "min_all", R, lambda x, p: x.min())
case("reduce", "argmax", [fl((3, 4, 5), grad=False)], lambda x, p: x.argmax(p["dim"], keepdim=p["keepdim"]),
     dim=1, keepdim=False)
case("reduce", "argmin", [fl((3, 4, 5), grad=False)], lambda x, p: x.argmin(p["dim"], keepdim=p["keepdim"]),
     dim=-1, keepdim=True)
case("reduce", "logsumexp", R, lambda x, p: torch.logsumexp(x, p["dims"], keepdim=p["keepdim"]), name="logsumexp_2",
     dims=[2], keepdim=False)
case("reduce", "logsumexp", R, lambda x, p: torch.logsumexp(x, p["dims"], keepdim=p["keepdim"]),
     name="logsumexp_0_1_keep", dims=[0, 1], keepdim=True)
case("reduce", "var", R, lambda x, p: torch.var(x), name="var_all", dims=[], keepdim=False, correction=1)
case("reduce", "var", R, lambda x, p: torch.var(x, p["dims"], correction=p["correction"], keepdim=p["keepdim"]),
     name="var_1", dims=[1], keepdim=False, correction=1)
case("reduce", "var", R, lambda x, p: torch.var(x, p["dims"], correction=p["correction"], keepdim=p["keepdim"]),
     name="var_2_keep_biased", dims=[2], keepdim=True, correction=0)

# shape: x (2, 3, 4) unless said
S = [fl((2, 3, 4))]
case("shape", "reshape", S, lambda x, p: x.reshape(p["shape"]), shape=[4, -1])
case("shape", "reshape_transposed", S, lambda x, p: x.transpose(0, 2).reshape(p["shape"]), shape=[4, 6])
case("shape", "view", S, lambda x, p: x.view(p["shape"]), shape=[6, 4])
case("shape", "flatten", S, lambda x, p: torch.flatten(x, p["start"], p["end"]), start=1, end=-1)
case("shape", "permute", S, lambda x, p: x.permute(p["dims"]), dims=[2, 0, 1])
case("shape", "transpose", S, lambda x, p: x.transpose(p["d0"], p["d1"]), d0=0, d1=2)
case("shape", "slice", S, lambda x, p: x[:, :, 1:4:2], dim=2, start=1, end=4, step=2)
case("shape", "narrow", S, lambda x, p: x.narrow(p["dim"], p["start"], p["length"]), dim=1, start=1, length=2)
case("shape", "select", S, lambda x, p: x.select(p["dim"], p["index"]), dim=1, index=-1)
case("shape", "expand", [fl((3, 1))], lambda x, p: x.expand(p["shape"]), shape=[2, 3, 4])
case("shape", "squeeze", [fl((3, 1, 4))], lambda x, p: x.squeeze(p["dim"]), dim=1)
case("shape", "unsqueeze", [fl((3, 4))], lambda x, p: x.unsqueeze(p["dim"]), dim=-1)
case("shape", "contiguous", S, lambda x, p: x.transpose(1, 2).contiguous(), name="contiguous_transposed")
case("shape", "cat", [fl((2, 3)), fl((2, 1)), fl((2, 2))], lambda a, b, c, p: torch.cat([a, b, c], p["dim"]), dim=1)
case("shape", "stack", [fl((3, 4)), fl((3, 4)), fl((3, 4))], lambda a, b, c, p: torch.stack([a, b, c], p["dim"]),
     dim=1)
case("shape", "split", [fl((3, 5))], lambda x, p: torch.split(x, p["size"], p["dim"]), size=2, dim=1)
case("shape", "split_sizes", [fl((4, 3))], lambda x, p: torch.split(x, p["sizes"], p["dim"]), sizes=[1, 3], dim=0)
case("shape", "sum_to", [fl((2, 3, 4))], lambda x, p: x.sum((0, 2), keepdim=True)[0], shape=[3, 1])

# matmul (torch.matmul semantics)
case("matmul", "matmul", [fl((3, 4)), fl((4, 5))], lambda a, b, p: a @ b, name="2d")
case("matmul", "matmul_bt", [fl((3, 4)), fl((5, 4))], lambda a, b, p: a @ b.t(), name="2d_transposed_b")
case("matmul", "matmul_at", [fl((4, 3)), fl((4, 5))], lambda a, b, p: a.t() @ b, name="2d_transposed_a")
case("matmul", "matmul", [fl((2, 3, 4)), fl((2, 4, 5))], lambda a, b, p: a @ b, name="batched")
case("matmul", "matmul", [fl((2, 1, 3, 4)), fl((3, 4, 5))], lambda a, b, p: a @ b, name="broadcast_batch")
case("matmul", "matmul", [fl((2, 3, 4)), fl((4, 5))], lambda a, b, p: a @ b, name="batched_times_2d")
case("matmul", "matmul", [fl((4,)), fl((4, 5))], lambda a, b, p: a @ b, name="vec_mat")
case("matmul", "matmul", [fl((3, 4)), fl((4,))], lambda a, b, p: a @ b, name="mat_vec")
case("matmul", "matmul", [fl((4,)), fl((4,))], lambda a, b, p: a @ b, name="dot")
case("matmul", "linear", [fl((3, 4)), fl((5, 4)), fl((5,))], lambda x, w, b, p: F.linear(x, w, b), name="linear_bias")
case("matmul", "linear", [fl((2, 3, 4)), fl((5, 4))], lambda x, w, p: F.linear(x, w), name="linear_3d_no_bias")

# indexing
case("index", "index_select", [fl((5, 3)), i64([4, 0, 2, 0])],
     lambda x, i, p: torch.index_select(x, p["dim"], i), name="index_select_0", dim=0)
case("index", "index_select", [fl((4, 3)), i64([2, 2, 0])],
     lambda x, i, p: torch.index_select(x, p["dim"], i), name="index_select_1", dim=1)
case("index", "index_add", [fl((5, 3)), i64([1, 3, 1]), fl((3, 3))],
     lambda x, i, s, p: x.index_add(p["dim"], i, s, alpha=p["alpha"]), name="index_add_0", dim=0, alpha=0.5)
case("index", "index_add", [fl((3, 4)), i64([3, 0]), fl((3, 2))],
     lambda x, i, s, p: x.index_add(p["dim"], i, s, alpha=p["alpha"]), name="index_add_1", dim=1, alpha=1.0)
case("index", "gather", [fl((3, 5)), rand_i64((3, 2), 0, 5)], lambda x, i, p: torch.gather(x, p["dim"], i),
     name="gather_1", dim=1)
case("index", "gather", [fl((4, 3)), rand_i64((2, 3), 0, 4)], lambda x, i, p: torch.gather(x, p["dim"], i),
     name="gather_0", dim=0)
case("index", "scatter_add", [fl((3, 5)), rand_i64((3, 4), 0, 5), fl((3, 4))],
     lambda x, i, s, p: torch.scatter_add(x, p["dim"], i, s), name="scatter_add_1", dim=1)
case("index", "scatter_add", [fl((3, 2)), rand_i64((4, 2), 0, 3), fl((4, 2))],
     lambda x, i, s, p: torch.scatter_add(x, p["dim"], i, s), name="scatter_add_0", dim=0)
case("index", "embedding", [fl((6, 4)), i64([[5, 0, 2], [2, 2, 1]])], lambda w, i, p: F.embedding(i, w))
case("index", "masked_fill", [fl((3, 4)), bools((1, 4))], lambda x, m, p: x.masked_fill(m, p["value"]), value=-5.0)
case("index", "topk", [fl((3, 6))],
     lambda x, p: tuple(torch.topk(x, p["k"], p["dim"], largest=p["largest"], sorted=True)),
     name="topk_largest", k=3, dim=-1, largest=True)
case("index", "topk", [fl((5, 3))],
     lambda x, p: tuple(torch.topk(x, p["k"], p["dim"], largest=p["largest"], sorted=True)),
     name="topk_smallest_dim0", k=2, dim=0, largest=False)
case("index", "dropout", [fl((3, 4))], lambda x, p: F.dropout(x, p["p"], training=False), name="dropout_eval",
     p=0.5, training=False)

# nn
case("nn", "softmax", [fl((3, 7), -3, 3)], lambda x, p: torch.softmax(x, p["dim"]), name="softmax_last", dim=-1)
case("nn", "softmax", [fl((4, 3, 5), -3, 3)], lambda x, p: torch.softmax(x, p["dim"]), name="softmax_dim1", dim=1)
case("nn", "log_softmax", [fl((3, 7), -3, 3)], lambda x, p: torch.log_softmax(x, p["dim"]), name="log_softmax_last",
     dim=-1)
case("nn", "log_softmax", [fl((4, 3), -3, 3)], lambda x, p: torch.log_softmax(x, p["dim"]), name="log_softmax_dim0",
     dim=0)
case("nn", "layer_norm", [fl((2, 3, 8)), fl((8,)), fl((8,))],
     lambda x, w, b, p: F.layer_norm(x, (x.shape[-1],), w, b, p["eps"]), name="layer_norm_affine", eps=1e-5)
case("nn", "layer_norm_plain", [fl((4, 8))], lambda x, p: F.layer_norm(x, (x.shape[-1],), None, None, p["eps"]),
     eps=1e-5)
case("nn", "rms_norm", [fl((2, 3, 8)), fl((8,))], lambda x, w, p: rms_norm_torch(x, w, p["eps"]), eps=1e-6)
CE = dict(ignore_index=-100, label_smoothing=0.0, reduction="mean")
case("nn", "cross_entropy", [fl((6, 5)), i64([1, -100, 4, 0, 2, -100])], cross_entropy_torch, name="ce_mean", **CE)
case("nn", "cross_entropy", [fl((6, 5)), i64([1, -100, 4, 0, 2, 3])], cross_entropy_torch, name="ce_mean_smoothing",
     **{**CE, "label_smoothing": 0.1})
case("nn", "cross_entropy", [fl((2, 3, 5)), i64([[3, 1, 3], [0, 4, 2]])], cross_entropy_torch,
     name="ce_sum_ignore3_smoothing_3d", **{**CE, "ignore_index": 3, "label_smoothing": 0.2, "reduction": "sum"})
case("nn", "cross_entropy", [fl((4, 5)), i64([2, -100, 0, 4])], cross_entropy_torch, name="ce_none",
     **{**CE, "reduction": "none"})
QKV = [fl((2, 2, 5, 4)), fl((2, 2, 5, 4)), fl((2, 2, 5, 4))]
case("nn", "attention", QKV, lambda q, k, v, p: attention_torch(q, k, v, p["causal"], p["scale"]),
     name="attention_causal", causal=True, scale=0.0)
case("nn", "attention", QKV, lambda q, k, v, p: attention_torch(q, k, v, p["causal"], p["scale"]),
     name="attention_full_scale", causal=False, scale=0.375)
# grouped ops: rows [offsets[k], offsets[k+1]) through group k's layer; group 1 is empty
case("nn", "grouped_linear", [fl((6, 4)), fl((3, 4)), fl((3,)), fl((3, 4)), fl((3,)), fl((3, 4)), fl((3,))],
     lambda x, *rest: grouped_linear_torch(x, *rest[:-1], p=rest[-1]), name="grouped_linear_bias",
     offsets=[0, 2, 2, 6], bias=True)
case("nn", "grouped_linear", [fl((5, 4)), fl((2, 4)), fl((2, 4))],
     lambda x, *rest: grouped_linear_torch(x, *rest[:-1], p=rest[-1]), name="grouped_linear_no_bias",
     offsets=[0, 3, 5], bias=False)
case("nn", "grouped_layer_norm", [fl((7, 8)), fl((8,)), fl((8,)), fl((8,)), fl((8,)), fl((8,)), fl((8,))],
     lambda x, *rest: grouped_layer_norm_torch(x, *rest[:-1], p=rest[-1]), offsets=[0, 3, 3, 7], eps=1e-5)
# packed sequences of lengths 3, 0, 4 (cu_seqlens), two heads
case("nn", "attention_varlen", [fl((2, 7, 4)), fl((2, 7, 4)), fl((2, 7, 4)), i64([0, 3, 3, 7])],
     lambda q, k, v, cu, p: attention_varlen_torch(q, k, v, cu, p["scale"]), name="attention_varlen", scale=0.0)
case("nn", "attention_varlen", [fl((1, 5, 3)), fl((1, 5, 3)), fl((1, 5, 3)), i64([0, 5])],
     lambda q, k, v, cu, p: attention_varlen_torch(q, k, v, cu, p["scale"]), name="attention_varlen_scale",
     scale=0.625)
case("nn", "attention_qkv", [fl((2, 5, 12))], lambda qkv, p: attention_qkv_torch(qkv, p["n_head"], p["scale"]),
     name="attention_qkv_padded", n_head=2, scale=0.0)
case("nn", "attention_qkv", [fl((7, 18)), i64([0, 4, 4, 7])],
     lambda qkv, cu, p: attention_qkv_torch(qkv, p["n_head"], p["scale"], cu), name="attention_qkv_packed", n_head=3,
     scale=0.5)


# --- running the table ------------------------------------------------------

def f32_list(t):
    # shortest decimal that reads back as the same f32
    return [float(repr(v)) for v in t.detach().numpy().astype(np.float32).reshape(-1)]


def f64_list(t):
    return [float(v) for v in t.detach().numpy().astype(np.float64).reshape(-1)]


def build_inputs(c):
    draw = Inputs(c["name"])
    out = []
    for s in c["specs"]:
        if s[0] == "float":
            _, shape, lo, hi, grad = s
            out.append(dict(shape=list(shape), kind="float", grad=grad, data=draw.floats(shape, lo, hi)))
        elif s[0] == "i64":
            out.append(dict(shape=list(s[1].shape), kind="i64", grad=False, data=s[1]))
        elif s[0] == "rand_i64":
            _, shape, lo, hi = s
            out.append(dict(shape=list(shape), kind="i64", grad=False, data=draw.ints(shape, lo, hi)))
        else:
            out.append(dict(shape=list(s[1]), kind="bool", grad=False, data=draw.bools(s[1])))
    return draw, out


def run_case(c):
    draw, inputs = build_inputs(c)
    record = dict(name=c["name"], family=c["family"], op=c["op"], params=c["params"], inputs=[], outputs=[])
    weights = None
    for dtype, tag, to_list in ((torch.float64, "f64", f64_list), (torch.float32, "f32", f32_list)):
        args = []
        for inp in inputs:
            if inp["kind"] == "float":
                t = torch.tensor(inp["data"], dtype=dtype).requires_grad_(inp["grad"])
            elif inp["kind"] == "i64":
                t = torch.tensor(inp["data"], dtype=torch.int64)
            else:
                t = torch.tensor(inp["data"], dtype=torch.bool)
            args.append(t)
        outs = c["fn"](*args, c["params"])
        outs = list(outs) if isinstance(outs, (tuple, list)) else [outs]
        if weights is None:  # one weight per float output element, shared by both dtypes
            weights = [draw.floats(tuple(o.shape), -1.0, 1.0) if o.is_floating_point() else None for o in outs]
            record["outputs"] = [dict(shape=list(o.shape), kind="float" if o.is_floating_point() else "i64")
                                 for o in outs]
            for r, w in zip(record["outputs"], weights):
                if w is not None:
                    r["w"] = f64_list(torch.tensor(w))
        loss = None
        for r, o, w in zip(record["outputs"], outs, weights):
            r[tag] = to_list(o) if o.is_floating_point() else [int(v) for v in o.reshape(-1)]
            if w is not None and o.requires_grad:
                term = (o * torch.tensor(w, dtype=dtype)).sum()
                loss = term if loss is None else loss + term
        if loss is not None:
            loss.backward()
        for inp, t in zip(inputs, args):
            if inp["kind"] == "float" and inp["grad"]:
                g = t.grad if t.grad is not None else torch.zeros_like(t)
                inp["grad_" + tag] = to_list(g)
    for inp in inputs:
        data = inp["data"]
        inp["data"] = [bool(v) for v in data.reshape(-1)] if inp["kind"] == "bool" else (
            [int(v) for v in data.reshape(-1)] if inp["kind"] == "i64" else [float(v) for v in data.reshape(-1)])
        record["inputs"].append(inp)
    return record


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "reference.json")
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names)), "case names must be unique"
    lines = [json.dumps(run_case(c), separators=(",", ":")) for c in CASES]
    text = '{"torch_version":' + json.dumps(torch.__version__.split("+")[0]) + ',"cases":[\n' + ",\n".join(lines) + "\n]}\n"
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
    print(f"wrote {len(CASES)} cases ({len(text) // 1024} KiB) to {os.path.relpath(path)}")


if __name__ == "__main__":
    main()
