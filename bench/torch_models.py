#!/usr/bin/python3
"""PyTorch reference models for dyngrad, and a safetensors reader/writer.

Import it from the other Python scripts (bench/torch_gpt.py,
tests/parity/make_gpt_reference.py); it is not a program. It needs Debian's
interpreter, the one that imports torch and numpy:

    import sys; sys.path.insert(0, "bench")
    from torch_models import GPTConfig, TorchGPT, load_state, read_safetensors

What it holds:
  * safetensors helpers written with json + numpy only (no `safetensors`
    package): read_safetensors, write_safetensors, load_state;
  * TorchGPT: the dense GPT of models/gpt.h, with the very same state-dict
    names and the same order of floating-point operations where it matters
    (a block returns its delta a + m; the model adds it to the residual);
  * a reserved section for the MoD / MoB reference models (not written yet).

State-dict names (V = 256, C = n_embd):
  wte.weight (V, C), wpe.weight (block_size, C),
  blocks.{i}.ln1.{weight,bias}, blocks.{i}.attn.qkv.{weight (3C, C), bias},
  blocks.{i}.attn.proj.{weight (C, C), bias}, blocks.{i}.ln2.{weight,bias},
  blocks.{i}.mlp.fc.{weight (4C, C), bias}, blocks.{i}.mlp.proj.{weight (C, 4C), bias},
  ln_f.{weight,bias}, lm_head.weight (V, C) only when the head is untied.
"""
import json
import math
import struct
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# --- safetensors --------------------------------------------------------------

# safetensors dtype name <-> numpy dtype (always little-endian on disk).
_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "BOOL": np.dtype("bool"),
}


def _dtype_name(dtype):
    """The safetensors name of a numpy dtype; ValueError when it has none here."""
    dtype = np.dtype(dtype)
    for name, d in _DTYPES.items():
        if dtype.kind == d.kind and dtype.itemsize == d.itemsize:
            return name
    raise ValueError(f"safetensors: unsupported dtype {dtype} (use f64, f32, i64, i32 or bool)")


def write_safetensors(path, tensors, metadata=None):
    """Writes `tensors` (dict name -> np.ndarray, in the dict's order) to `path`.

    Layout: 8-byte little-endian u64 header length N, N bytes of JSON
    ({"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets"}}),
    padded with spaces to a multiple of 8, then the raw little-endian
    row-major bytes of every tensor in the order of the entries. Offsets are
    relative to the end of the header. Metadata values are converted to str.
    """
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name, array in tensors.items():
        if name == "__metadata__":
            raise ValueError("safetensors: '__metadata__' is not a tensor name")
        array = np.asarray(array)
        dname = _dtype_name(array.dtype)
        data = np.ascontiguousarray(array, dtype=_DTYPES[dname]).tobytes()
        header[name] = {"dtype": dname, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for data in blobs:
            f.write(data)


def read_safetensors(path):
    """Reads a safetensors file: returns (dict name -> np.ndarray, metadata dict).

    Checks the header length, every dtype, that every shape matches its byte
    range and that the ranges lie inside the file. Arrays come back in the
    order of the header's entries, as native numpy arrays (copies).
    """
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise ValueError(f"{path}: header length {n} runs past the end of the file")
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    body = memoryview(raw)[8 + n:]
    metadata = header.pop("__metadata__", {}) or {}
    tensors = {}
    for name, info in header.items():
        dname = info["dtype"]
        if dname not in _DTYPES:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype {dname}")
        dtype = _DTYPES[dname]
        shape = tuple(int(s) for s in info["shape"])
        begin, end = (int(o) for o in info["data_offsets"])
        count = math.prod(shape)
        if not (0 <= begin <= end <= len(body)) or end - begin != count * dtype.itemsize:
            raise ValueError(f"{path}: tensor {name}: data_offsets [{begin}, {end}] do not fit "
                             f"shape {list(shape)} of {dname} in a body of {len(body)} bytes")
        array = np.frombuffer(body[begin:end], dtype=dtype, count=count).reshape(shape)
        tensors[name] = array.astype(dtype.newbyteorder("="), copy=True)
    return tensors, metadata


def load_state(model, path, prefix=""):
    """Loads a dyngrad-written weights file into `model` (strict, shape-checked).

    Every parameter of the model must be in the file under `prefix + name`
    with the same shape, and every tensor of the file that starts with
    `prefix` must be a parameter of the model; otherwise ValueError listing
    the differences. Values are converted to the parameter's dtype. Returns
    the file's metadata.
    """
    tensors, metadata = read_safetensors(path)
    tensors = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    params = dict(model.named_parameters())
    missing = sorted(set(params) - set(tensors))
    unexpected = sorted(set(tensors) - set(params))
    wrong = [f"{k}: file {list(tensors[k].shape)} vs model {list(p.shape)}"
             for k, p in params.items() if k in tensors and tuple(tensors[k].shape) != tuple(p.shape)]
    if missing or unexpected or wrong:
        raise ValueError(f"{path}: does not match the model: missing {missing}, "
                         f"unexpected {unexpected}, wrong shapes {wrong}")
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(torch.from_numpy(tensors[k]).to(p.dtype))
    return metadata


# --- dense GPT ------------------------------------------------------------------

@dataclass
class GPTConfig:
    """Configuration of the dense GPT (the fields of models::GPTConfig)."""
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 128
    vocab_size: int = 256
    dropout: float = 0.0
    tied_head: bool = True


class CausalSelfAttention(nn.Module):
    """Causal multi-head self-attention: qkv = x Wqkv^T + b split along the
    last dim into q, k, v; out = proj(softmax(q k^T / sqrt(D)) v)."""

    def __init__(self, cfg):
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0, "n_embd must be a multiple of n_head"
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)

    def forward(self, x):
        """x (B, T, C) -> (B, T, C)."""
        B, T, C = x.shape
        H = self.n_head
        D = C // H
        qkv = self.qkv(x)
        q, k, v = qkv[:, :, 0:C], qkv[:, :, C:2 * C], qkv[:, :, 2 * C:3 * C]
        q = q.reshape(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        k = k.reshape(B, T, H, D).transpose(1, 2)
        v = v.reshape(B, T, H, D).transpose(1, 2)
        # The C++ kernel scales q before the product: S = (scale * Q) K^T.
        scale = 1.0 / math.sqrt(D)
        att = (q * scale) @ k.transpose(-2, -1)  # (B, H, T, T)
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        att = att.masked_fill(mask, float("-inf"))
        att = F.softmax(att, dim=-1)
        y = att @ v  # (B, H, T, D)
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.proj(y)


class MLP(nn.Module):
    """proj(gelu_tanh(fc(x))), hidden width 4C."""

    def __init__(self, cfg):
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd)
        self.proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd)

    def forward(self, x):
        """x (B, T, C) -> (B, T, C)."""
        return self.proj(F.gelu(self.fc(x), approximate="tanh"))


class Block(nn.Module):
    """Pre-norm transformer block returning only its delta:
    a = attn(ln1(x)), m = mlp(ln2(x + a)), delta = a + m."""

    def __init__(self, cfg):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embd, eps=1e-5)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.n_embd, eps=1e-5)
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x):
        """x (B, T, C) -> delta (B, T, C); the caller adds it to x."""
        a = self.drop(self.attn(self.ln1(x)))
        m = self.drop(self.mlp(self.ln2(x + a)))
        return a + m


class TorchGPT(nn.Module):
    """The dense GPT of models/gpt.h: embeddings -> blocks -> ln_f -> head."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.n_embd, eps=1e-5)
        if not cfg.tied_head:
            self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.init_weights()

    def init_weights(self):
        """GPT-2 init: N(0, 0.02) for embeddings and Linear weights, zero
        biases, LayerNorm 1/0, N(0, 0.02/sqrt(2L)) for attn.proj and mlp.proj.
        Draws from torch's global generator in state-dict order."""
        proj_std = 0.02 / math.sqrt(2 * self.cfg.n_layer)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("ln1.weight") or name.endswith("ln2.weight") or name == "ln_f.weight":
                    p.fill_(1.0)
                elif name.endswith(".bias"):
                    p.zero_()
                elif name.endswith("attn.proj.weight") or name.endswith("mlp.proj.weight"):
                    p.normal_(0.0, proj_std)
                else:
                    p.normal_(0.0, 0.02)

    def forward(self, idx, targets=None):
        """idx (B, T) int64 -> logits (B, T, V); with targets (B, T) also the
        mean cross-entropy over all B*T positions: returns (logits, loss)."""
        B, T = idx.shape
        if T > self.cfg.block_size:
            raise ValueError(f"TorchGPT: sequence length {T} exceeds block_size {self.cfg.block_size}")
        pos = torch.arange(T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.blocks:
            x = x + block(x)
        h = self.ln_f(x)
        if self.cfg.tied_head:
            logits = h @ self.wte.weight.t()
        else:
            logits = self.lm_head(h)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(B * T))
        return logits, loss


def adamw_param_groups(model, weight_decay):
    """Two AdamW groups: weight decay on parameters with dim >= 2 (embeddings,
    Linear weights), none on biases and LayerNorm parameters."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


# --- MoD / MoB reference models -------------------------------------------------
#
# Reserved: the Mixture-of-Depths and Mixture-of-Blocks reference models
# (models/mod.h, models/mob.h) go here, built from Block above so that their
# state-dict names and block arithmetic match the dense model.
