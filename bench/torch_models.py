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
  * TorchMoD, TorchMoB and TorchMoE: the routed models of models/mod.h,
    models/mob.h and models/moe.h (training objectives), with config_from_json
    to read dyngrad's config JSON;
  * TorchMoR: Mixture-of-Recursions (models/mor.h), both routers.

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
    last dim into q, k, v; out = proj(softmax(q k^T / sqrt(D)) v).

    use_sdpa (class-wide, off by default): compute the attention with
    F.scaled_dot_product_attention (PyTorch's fused flash/memory-efficient
    kernels, never T x T) instead of the explicit product below: the fastest
    eager PyTorch, for GPU benchmarks (bench/torch_gpt.py --sdpa)."""

    use_sdpa = False

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
        if CausalSelfAttention.use_sdpa:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
            return self.proj(y.transpose(1, 2).reshape(B, T, C))
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


    def head_and_lm(self, x, targets):
        """(logits, LM loss or None) of the residual x (B, T, C) through ln_f
        and the head; the routed models' objectives add their terms to it and
        keep the LM loss as self.last_lm."""
        B, T, _ = x.shape
        h = self.ln_f(x)
        logits = h @ self.wte.weight.t() if self.cfg.tied_head else self.lm_head(h)
        if targets is None:
            return logits, None
        lm = F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(B * T))
        self.last_lm = lm.detach()
        return logits, lm


def adamw_param_groups(model, weight_decay):
    """Two AdamW groups: weight decay on parameters with dim >= 2 (embeddings,
    Linear weights), none on biases and LayerNorm parameters."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


# --- MoD / MoB reference models -------------------------------------------------
#
# The routed models of models/mod.h and models/mob.h, written as a PyTorch
# researcher would write them for speed (batched index ops, no per-token
# Python loops), with dyngrad's config fields, state-dict names and training
# objective, so that a dyngrad safetensors file of initial weights loads
# strictly and both sides compute the same loss. Configs can be read straight
# from the JSON dyngrad writes (config_from_json), so the two sides cannot
# drift apart on a default.

def _enum(value, allowed, field):
    """`value` if it is one of `allowed`, else ValueError naming the field."""
    if value not in allowed:
        raise ValueError(f"{field}: '{value}' is not one of {', '.join(allowed)}")
    return value


@dataclass
class MoDConfig:
    """Mixture-of-Depths (the fields of models::MoDConfig)."""
    gpt: GPTConfig
    capacity: float = 0.125
    mod_every: int = 2
    router_weight: str = "raw"        # raw | sigmoid | none
    causal: str = "both"              # aux_loss | predictor | both
    predictor_hidden: int = 64
    aux_weight: float = 0.01
    predictor_weight: float = 0.01


@dataclass
class MoBConfig:
    """Mixture-of-Blocks (the fields of models::MoBConfig; gpt.n_layer is
    ignored, the blocks are n_blocks)."""
    gpt: GPTConfig
    n_blocks: int = 4
    max_depth: int = 6
    halting: str = "ponder"           # only ponder here (the bias policy is a dyngrad ablation)
    gate_init: str = "dense-path"     # dense-path | uniform
    attn_scope: str = "step"          # step | block
    weight: str = "q"                 # q | straight-through
    explore: str = "none"             # only none here (exploration draws from dyngrad's generator)
    explore_param: float = 0.0
    return_bias: float = 0.0
    prior: float = 0.3
    kl: float = 0.01
    eps: float = 0.1
    ponder_cost: float = 0.01
    depth_target: float = 0.0
    depth_weight: float = 0.0
    balance: float = 0.0


@dataclass
class MoEConfig:
    """Mixture-of-Experts (the fields of models::MoEConfig)."""
    gpt: GPTConfig
    n_experts: int = 4
    top_k: int = 1
    moe_every: int = 1
    capacity_factor: float = 0.0
    balance: float = 0.01
    z_loss: float = 1e-3


@dataclass
class MoRConfig:
    """Mixture-of-Recursions (the fields of models::MoRConfig; gpt.n_layer is
    ignored, the shared cycle has `cycle` blocks)."""
    gpt: GPTConfig
    cycle: int = 2
    n_recursions: int = 3
    router: str = "expert"            # expert | token
    capacity: float = 0.5
    aux_weight: float = 0.01
    balance: float = 0.01


def config_from_json(kind, text):
    """The config of a dyngrad model of `kind` (dense | mod | mob | moe | mor) from the JSON
    its to_json wrote (e.g. a checkpoint's or a bench file's model_config).
    Returns (config, dtype name)."""
    j = json.loads(text) if isinstance(text, str) else dict(text)
    try:
        gpt = GPTConfig(n_layer=int(j["n_layer"]), n_head=int(j["n_head"]), n_embd=int(j["n_embd"]),
                        block_size=int(j["block_size"]), vocab_size=int(j["vocab_size"]),
                        dropout=float(j["dropout"]), tied_head=bool(j["tied_head"]))
        dtype = _enum(j["dtype"], ("f32", "f64"), "dtype")
        if kind == "dense":
            return gpt, dtype
        if kind == "mod":
            return MoDConfig(gpt=gpt, capacity=float(j["capacity"]), mod_every=int(j["mod_every"]),
                             router_weight=_enum(j["router_weight"], ("raw", "sigmoid", "none"), "router_weight"),
                             causal=_enum(j["causal"], ("aux_loss", "predictor", "both"), "causal"),
                             predictor_hidden=int(j["predictor_hidden"]), aux_weight=float(j["aux_weight"]),
                             predictor_weight=float(j["predictor_weight"])), dtype
        if kind == "mob":
            floats = ("explore_param", "return_bias", "prior", "kl", "eps", "ponder_cost", "depth_target",
                      "depth_weight", "balance")
            return MoBConfig(gpt=gpt, n_blocks=int(j["n_blocks"]), max_depth=int(j["max_depth"]),
                             halting=j["halting"], gate_init=j["gate_init"], attn_scope=j["attn_scope"],
                             weight=j["weight"], explore=j["explore"], **{k: float(j[k]) for k in floats}), dtype
        if kind == "moe":
            return MoEConfig(gpt=gpt, n_experts=int(j["n_experts"]), top_k=int(j["top_k"]),
                             moe_every=int(j["moe_every"]), capacity_factor=float(j["capacity_factor"]),
                             balance=float(j["balance"]), z_loss=float(j["z_loss"])), dtype
        if kind == "mor":
            return MoRConfig(gpt=gpt, cycle=int(j["cycle"]), n_recursions=int(j["n_recursions"]),
                             router=_enum(j["router"], ("expert", "token"), "router"), capacity=float(j["capacity"]),
                             aux_weight=float(j["aux_weight"]), balance=float(j["balance"])), dtype
    except KeyError as e:
        raise ValueError(f"{kind} config: no field {e} in {text!r}") from None
    raise ValueError(f"unknown model kind '{kind}' (dense, mod, mob, moe or mor)")


def config_to_json(kind, cfg, dtype="f64"):
    """The JSON dyngrad's to_json writes for this config (models/*.cpp), so a
    file made here names its model the way a dyngrad checkpoint does."""
    gpt = cfg if kind == "dense" else cfg.gpt
    j = {"n_layer": gpt.n_layer, "n_head": gpt.n_head, "n_embd": gpt.n_embd, "block_size": gpt.block_size,
         "vocab_size": gpt.vocab_size, "dropout": gpt.dropout, "tied_head": gpt.tied_head, "seed": 0,
         "dtype": _enum(dtype, ("f32", "f64"), "dtype")}
    if kind != "dense":
        j.update({k: v for k, v in cfg.__dict__.items() if k != "gpt"})
    if kind == "mob":
        j["n_layer"] = cfg.n_blocks
    if kind == "mor":
        j["n_layer"] = cfg.cycle
    return json.dumps(j)


def make_torch_model(kind, cfg):
    """TorchGPT, TorchMoD, TorchMoB, TorchMoE or TorchMoR for `kind` with config `cfg`."""
    return {"dense": TorchGPT, "mod": TorchMoD, "mob": TorchMoB, "moe": TorchMoE, "mor": TorchMoR}[kind](cfg)


class Router(nn.Module):
    """MoD router of one routed block: r = proj(x) (C -> 1, no bias) and the
    causal predictor pred_out(relu(pred_fc(x.detach()))) (C -> hidden -> 1)."""

    def __init__(self, C, hidden):
        super().__init__()
        self.proj = nn.Linear(C, 1, bias=False)
        self.pred_fc = nn.Linear(C, hidden)
        self.pred_out = nn.Linear(hidden, 1)

    def forward(self, x):
        """x (B, T, C) -> (router logits (B, T), predictor logits (B, T))."""
        r = self.proj(x).squeeze(-1)
        pred = self.pred_out(F.relu(self.pred_fc(x.detach()))).squeeze(-1)
        return r, pred


class TorchMoD(TorchGPT):
    """Mixture-of-Depths (models/mod.h), training-mode top-k routing.

    Blocks i with i % mod_every == mod_every - 1 are routed: per sequence the
    k = ceil(capacity * T) tokens with the largest router logit r are taken
    (torch.topk, indices sorted so the kept tokens stay in position order),
    gathered into a (B, k, C) batch, run through the block (causal attention
    among the kept tokens only) and scattered back as x + g(r) * delta with
    g = raw | sigmoid | none. Objective: LM cross-entropy plus, per routed
    block, aux_weight * BCE(r, membership) and predictor_weight *
    BCE(predictor, membership) (as selected by `causal`).
    forward returns (logits, objective); self.last_lm is the plain LM loss.
    """

    def __init__(self, cfg):
        if not 0 < cfg.capacity <= 1:
            raise ValueError(f"TorchMoD: capacity must be in (0, 1], got {cfg.capacity}")
        if cfg.mod_every < 1:
            raise ValueError(f"TorchMoD: mod_every must be >= 1, got {cfg.mod_every}")
        super().__init__(cfg.gpt)
        self.mcfg = cfg
        self.routers = nn.ModuleDict({str(i): Router(cfg.gpt.n_embd, cfg.predictor_hidden)
                                      for i in range(cfg.gpt.n_layer) if self.is_routed(i)})
        with torch.no_grad():
            for r in self.routers.values():
                for name, p in r.named_parameters():
                    p.zero_() if name.endswith("bias") else p.normal_(0.0, 0.02)
        self.last_lm = None

    def is_routed(self, i):
        return i % self.mcfg.mod_every == self.mcfg.mod_every - 1

    def capacity_k(self, T):
        return min(max(math.ceil(self.mcfg.capacity * T - 1e-9), 1), T)

    def _weight(self, r):
        if self.mcfg.router_weight == "raw":
            return r
        if self.mcfg.router_weight == "sigmoid":
            return torch.sigmoid(r)
        return torch.ones_like(r)

    def forward(self, idx, targets=None):
        B, T = idx.shape
        if T > self.cfg.block_size:
            raise ValueError(f"TorchMoD: sequence length {T} exceeds block_size {self.cfg.block_size}")
        C = self.cfg.n_embd
        k = self.capacity_k(T)
        pos = torch.arange(T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        aux = None
        for i, block in enumerate(self.blocks):
            if not self.is_routed(i):
                x = x + block(x)
                continue
            r, pred = self.routers[str(i)](x)                                   # (B, T) each
            with torch.no_grad():
                keep = torch.topk(r, k, dim=1, sorted=False).indices.sort(dim=1).values  # (B, k) ascending
                target = torch.zeros_like(r).scatter_(1, keep, 1.0)              # top-k membership
            keep_c = keep.unsqueeze(-1).expand(B, k, C)
            delta = block(torch.gather(x, 1, keep_c))                           # (B, k, C)
            w = self._weight(torch.gather(r, 1, keep))                          # (B, k)
            x = x.scatter_add(1, keep_c, delta * w.unsqueeze(-1))
            term = None
            if self.mcfg.causal != "predictor":
                term = F.binary_cross_entropy_with_logits(r, target) * self.mcfg.aux_weight
            if self.mcfg.causal != "aux_loss":
                p = F.binary_cross_entropy_with_logits(pred, target) * self.mcfg.predictor_weight
                term = p if term is None else term + p
            if term is not None:
                aux = term if aux is None else aux + term
        logits, lm = self.head_and_lm(x, targets)
        if lm is None:
            return logits, None
        return logits, (lm if aux is None else lm + aux)


class TorchMoB(TorchGPT):
    """Mixture-of-Blocks (models/mob.h), PonderNet halting, training objective.

    Per step d (0..max_depth) over the active tokens (flat rows b*T + t):
      p = softmax(gate(gate_ln(R)) + step_bias[d] (+ return_bias*d on return)),
      lambda = p[:, n]; a token halts at d == max_depth or once its surviving
      mass S*(1 - lambda) is under eps; h = S (halting) or lambda*S, and the
      objective gets sum h*CE(head(R), y) + kl * sum h*(log h - log prior_d).
      The others take block argmax q, q = p[:, :n] / (1 - lambda), and
      R += w * delta, w = q_k (or straight-through 1 - sg(q_k) + q_k).
    Execution: the continuing tokens are sorted by block (stable argsort), each
    block projects its group in one batched call (index_select), and one
    masked attention per step runs over the (B, H, T, T) padded layout —
    causal by position, keys restricted to the tokens active at this step
    (scope step) or to those that chose the same block (scope block). The
    deltas are index_add-ed back. objective = total / (B*T).
    forward returns (None, objective) with targets (training); self.last_paths
    holds per token the block chosen at each step (-1: returned there,
    -2: after returning), like dyngrad's routing trace.
    """

    def __init__(self, cfg):
        if cfg.halting != "ponder":
            raise ValueError(f"TorchMoB: only the ponder halting policy is implemented, got '{cfg.halting}'")
        if cfg.explore != "none":
            raise ValueError(f"TorchMoB: exploration '{cfg.explore}' draws from dyngrad's generator; use none")
        if cfg.balance != 0 or cfg.depth_weight != 0:
            raise ValueError("TorchMoB: the balance and depth-budget terms are not implemented (set them to 0)")
        _enum(cfg.gate_init, ("dense-path", "uniform"), "gate_init")
        _enum(cfg.attn_scope, ("step", "block"), "attn_scope")
        _enum(cfg.weight, ("q", "straight-through"), "weight")
        if not 0 < cfg.prior < 1 or not 0 <= cfg.eps <= 1 or cfg.n_blocks < 1 or cfg.max_depth < 1:
            raise ValueError(f"TorchMoB: invalid config {cfg}")
        gpt = GPTConfig(**{**cfg.gpt.__dict__, "n_layer": cfg.n_blocks})
        super().__init__(gpt)
        self.mcfg = cfg
        n, D, C = cfg.n_blocks, cfg.max_depth, gpt.n_embd
        self.gate_ln = nn.LayerNorm(C, eps=1e-5)
        self.gate = nn.Linear(C, n + 1, bias=False)
        self.step_bias = nn.Parameter(torch.zeros(D + 1, n + 1))
        with torch.no_grad():
            if cfg.gate_init == "dense-path":
                self.gate.weight.zero_()
                for d in range(D + 1):
                    self.step_bias[d, d if d < n else n] = 3.0
            else:
                self.gate.weight.normal_(0.0, 0.02)
        self.last_paths = None

    def gate_logits(self, x, d):
        logits = self.gate(self.gate_ln(x)) + self.step_bias[d]
        if self.mcfg.return_bias != 0.0:
            rb = torch.zeros(self.mcfg.n_blocks + 1, dtype=x.dtype, device=x.device)
            rb[-1] = self.mcfg.return_bias * d
            logits = logits + rb
        return logits

    def head(self, x):
        h = self.ln_f(x)
        return h @ self.wte.weight.t() if self.cfg.tied_head else self.lm_head(h)

    def log_prior(self, d):
        lam, D = self.mcfg.prior, self.mcfg.max_depth
        return math.log(lam) + d * math.log1p(-lam) if d < D else D * math.log1p(-lam)

    def forward(self, idx, targets=None):
        if targets is None or not self.training:
            raise ValueError("TorchMoB: only the training objective is implemented (train mode, with targets); "
                             "eval-mode halting at lambda > 0.5 is not")
        cfg = self.mcfg
        B, T = idx.shape
        if T > self.cfg.block_size:
            raise ValueError(f"TorchMoB: sequence length {T} exceeds block_size {self.cfg.block_size}")
        N, C, H = B * T, self.cfg.n_embd, self.cfg.n_head
        Dh, n, D = C // H, cfg.n_blocks, cfg.max_depth
        dev = idx.device
        pos = torch.arange(T, device=dev)
        R = self.drop(self.wte(idx) + self.wpe(pos)).reshape(N, C)
        y = targets.reshape(N)
        active = torch.arange(N, device=dev)                     # ascending flat rows
        S = None                                                 # surviving mass of the active rows
        paths = torch.full((N, D + 1), -2, dtype=torch.int64, device=dev)
        causal = torch.ones(T, T, dtype=torch.bool, device=dev).tril()
        scale = 1.0 / math.sqrt(Dh)
        total, kl = None, None
        for d in range(D + 1):
            Ra = R.index_select(0, active)
            p = F.softmax(self.gate_logits(Ra, d), dim=-1)      # (Na, n + 1)
            lam = p[:, n]
            if S is None:
                S = torch.ones_like(lam)
            ce = F.cross_entropy(self.head(Ra), y.index_select(0, active), reduction="none")
            with torch.no_grad():
                if d >= D:
                    halt = torch.ones_like(lam, dtype=torch.bool)
                else:
                    halt = S * (1.0 - lam) < cfg.eps
            h = torch.where(halt, torch.ones_like(lam), lam) * S
            kl_d = (h * (torch.log(torch.clamp(h, 1e-12, 1.0)) - self.log_prior(d))).sum()
            ce_d = (h * ce).sum()
            total = ce_d if total is None else total + ce_d
            kl = kl_d if kl is None else kl + kl_d
            cont = (~halt).nonzero().squeeze(1)
            paths[active[halt], d] = -1
            if cont.numel() == 0:
                break
            # Block choice among the continuing tokens.
            q = p.index_select(0, cont)[:, :n] / (1.0 - lam.index_select(0, cont)).unsqueeze(1)
            choice = torch.argmax(q.detach(), dim=1)             # first maximum, like dyngrad
            qk = q.gather(1, choice.unsqueeze(1)).squeeze(1)
            w = qk if cfg.weight == "q" else (qk - qk.detach()) + 1.0
            S = (S * (1.0 - lam)).index_select(0, cont)
            rows = active.index_select(0, cont)                  # ascending
            paths[rows, d] = choice
            # Group by block: stable sort, one batched call per non-empty block.
            order = torch.sort(choice, stable=True).indices
            counts = torch.bincount(choice, minlength=n).tolist()
            rows_g = rows.index_select(0, order)                 # rows in group order
            x_g = R.index_select(0, rows_g)
            xs = torch.split(x_g, counts)
            used = [k for k in range(n) if counts[k] > 0]
            qkv = torch.cat([self.blocks[k].attn.qkv(self.blocks[k].ln1(xs[k])) for k in used])  # (Nc, 3C)
            # Scatter q, k, v into the padded (B, T) layout; mask keys by step/block membership.
            qkv_pad = torch.zeros(N, 3 * C, dtype=qkv.dtype, device=dev).index_copy(0, rows_g, qkv)
            qkv_pad = qkv_pad.reshape(B, T, 3, H, Dh).permute(2, 0, 3, 1, 4)   # (3, B, H, T, Dh)
            group = torch.full((N,), -1, dtype=torch.int64, device=dev)
            group[rows_g] = choice.index_select(0, order) if cfg.attn_scope == "block" else 0
            group = group.reshape(B, T)
            allowed = (group.unsqueeze(1) == group.unsqueeze(2)) & (group.unsqueeze(1) >= 0) & causal
            allowed |= torch.eye(T, dtype=torch.bool, device=dev)  # idle rows see themselves: no empty softmax
            att = (qkv_pad[0] * scale) @ qkv_pad[1].transpose(-2, -1)           # (B, H, T, T)
            att = F.softmax(att.masked_fill(~allowed.unsqueeze(1), float("-inf")), dim=-1)
            ya = (att @ qkv_pad[2]).transpose(1, 2).reshape(N, C).index_select(0, rows_g)  # (Nc, C)
            ys = torch.split(ya, counts)
            deltas = []
            for k in used:
                blk = self.blocks[k]
                a = blk.drop(blk.attn.proj(ys[k]))
                deltas.append(a + blk.drop(blk.mlp(blk.ln2(xs[k] + a))))
            delta = torch.cat(deltas)                            # (Nc, C) in group order
            R = R.index_add(0, rows_g, delta * w.index_select(0, order).unsqueeze(1))
            active = rows
        self.last_paths = paths.cpu()
        return None, (total + kl * cfg.kl) * (1.0 / N)


class MoELayer(nn.Module):
    """The router (C -> E, no bias) and experts 1..E-1 of one MoE block
    (expert 0 is the block's own mlp), as moe.{i}.router / moe.{i}.experts.{e}."""

    def __init__(self, cfg):
        super().__init__()
        C, E = cfg.gpt.n_embd, cfg.n_experts
        self.router = nn.Linear(C, E, bias=False)
        self.experts = nn.ModuleDict({str(e): MLP(cfg.gpt) for e in range(1, E)})


class TorchMoE(TorchGPT):
    """Mixture-of-Experts (models/moe.h), token-choice top-k, training objective.

    In blocks i with i % moe_every == moe_every - 1 the MLP half is replaced:
    x1 = x + attn half; h = ln2(x1) as N = B*T rows; p = softmax(router(h));
    each token takes its top-k experts (argmax, ties to the lower index; for
    k = 2 the second is the argmax with the first masked), gates p at the
    choices (renormalised over the two when k = 2). In training with
    capacity_factor > 0 an expert keeps at most ceil(cf * N * k / E)
    assignments in token order (a token's first choice before its second;
    the rank of an assignment in its expert is a cumulative count). Execution
    as a PyTorch user writes it: a loop over the experts, each on its rows
    (index_select), the weighted outputs index_add-ed into x1. Objective: LM
    + balance * mean over layers of E * sum_i f_i P_i + z_loss * mean over
    layers of mean(logsumexp(logits)^2). forward returns (logits, objective);
    self.last_lm is the LM loss and self.last_routes (layers, N, k) the
    expert of every assignment (-1 where dropped), like dyngrad's routes.
    """

    def __init__(self, cfg):
        if not 1 <= cfg.top_k <= min(2, cfg.n_experts):
            raise ValueError(f"TorchMoE: top_k {cfg.top_k} must be in 1..min(2, n_experts {cfg.n_experts})")
        if cfg.capacity_factor < 0 or cfg.moe_every < 1:
            raise ValueError(f"TorchMoE: invalid config {cfg}")
        super().__init__(cfg.gpt)
        self.mcfg = cfg
        self.moe = nn.ModuleDict({str(i): MoELayer(cfg) for i in range(cfg.gpt.n_layer) if self.has_experts(i)})
        proj_std = 0.02 / math.sqrt(2 * cfg.gpt.n_layer)
        with torch.no_grad():
            for name, p in self.moe.named_parameters():
                if name.endswith(".bias"):
                    p.zero_()
                else:
                    p.normal_(0.0, proj_std if name.endswith("proj.weight") else 0.02)
        self.last_lm = None
        self.last_routes = None

    def has_experts(self, i):
        return i % self.mcfg.moe_every == self.mcfg.moe_every - 1

    def _experts(self, i):
        layer = self.moe[str(i)]
        return [self.blocks[i].mlp] + [layer.experts[str(e)] for e in range(1, self.mcfg.n_experts)]

    def _route(self, p):
        """p (N, E) -> (choice (N, k), kept (N, k) bool, counts (E)); no gradient."""
        N, E = p.shape
        k = self.mcfg.top_k
        first = p.argmax(dim=1)                                   # the first maximal index
        choice = first.unsqueeze(1)
        if k == 2:
            second = p.masked_fill(F.one_hot(first, E).bool(), float("-inf")).argmax(dim=1)
            choice = torch.stack([first, second], dim=1)
        flat = choice.reshape(-1)                                 # token order, first choice first
        kept = torch.ones_like(flat, dtype=torch.bool)
        if self.training and self.mcfg.capacity_factor > 0:
            cap = math.ceil(self.mcfg.capacity_factor * N * k / E)
            rank = (F.one_hot(flat, E).cumsum(dim=0) - 1).gather(1, flat.unsqueeze(1)).squeeze(1)
            kept = rank < cap
        return choice, kept.reshape(N, k), torch.bincount(flat, minlength=E)

    def forward(self, idx, targets=None):
        B, T = idx.shape
        if T > self.cfg.block_size:
            raise ValueError(f"TorchMoE: sequence length {T} exceeds block_size {self.cfg.block_size}")
        C, E, k, N = self.cfg.n_embd, self.mcfg.n_experts, self.mcfg.top_k, B * T
        pos = torch.arange(T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        balance, zs, routes = [], [], []
        for i, block in enumerate(self.blocks):
            if not self.has_experts(i):
                x = x + block(x)
                continue
            x1 = (x + block.drop(block.attn(block.ln1(x)))).reshape(N, C)
            h = block.ln2(x1)
            logits = self.moe[str(i)].router(h)                   # (N, E)
            p = F.softmax(logits, dim=-1)
            with torch.no_grad():
                choice, kept, counts = self._route(p)
            gates = p.gather(1, choice)                           # (N, k)
            if k == 2:
                gates = gates / gates.sum(dim=1, keepdim=True)
            flat, gflat, kflat = choice.reshape(-1), gates.reshape(-1), kept.reshape(-1)
            out = x1
            for e, expert in enumerate(self._experts(i)):
                a = torch.nonzero(kflat & (flat == e)).squeeze(1)  # assignments, token order
                if a.numel() == 0:
                    continue
                tok = a // k
                y = block.drop(expert(h.index_select(0, tok)))
                out = out.index_add(0, tok, y * gflat.index_select(0, a).unsqueeze(1))
            x = out.reshape(B, T, C)
            f = counts.to(p.dtype) / (N * k)
            balance.append(E * (p.mean(dim=0) * f).sum())
            zs.append(torch.logsumexp(logits, dim=-1).square().mean())
            routes.append(torch.where(kept, choice, torch.full_like(choice, -1)))
        self.last_routes = torch.stack(routes)
        logits, lm = self.head_and_lm(x, targets)
        if lm is None:
            return logits, None
        objective = lm + torch.stack(balance).mean() * self.mcfg.balance + torch.stack(zs).mean() * self.mcfg.z_loss
        return logits, objective


def masked_block(blk, x, allowed):
    """blk's delta on x (B, T, C) where query t sees key u iff allowed[b, t, u]
    (B, T, T): the Block of this file with its attention mask given."""
    B, T, C = x.shape
    H = blk.attn.n_head
    D = C // H
    qkv = blk.attn.qkv(blk.ln1(x)).reshape(B, T, 3, H, D).permute(2, 0, 3, 1, 4)   # (3, B, H, T, D)
    att = (qkv[0] * (1.0 / math.sqrt(D))) @ qkv[1].transpose(-2, -1)                # (B, H, T, T)
    att = F.softmax(att.masked_fill(~allowed.unsqueeze(1), float("-inf")), dim=-1)
    a = blk.drop(blk.attn.proj((att @ qkv[2]).transpose(1, 2).reshape(B, T, C)))
    return a + blk.drop(blk.mlp(blk.ln2(x + a)))


class TorchMoR(TorchGPT):
    """Mixture-of-Recursions (models/mor.h), training objective.

    The `cycle` blocks are shared by up to n_recursions recursions; every token
    runs recursion 0 (x + delta_j for each block j of the cycle).
      expert: recursion r >= 1 scores the tokens active at r with
        routers[r] (C -> 1, no bias); per sequence the top k_r (k_0 = T,
        k_r = ceil(capacity * k_{r-1}), at least 1) go on (torch.topk, indices
        sorted: position order), are gathered into (B, k_r, C), run through
        the cycle (causal attention among them) and scattered back as
        x + sigmoid(s) * delta. Objective: LM + aux_weight * sum_r
        BCE(s_r, top-k membership).
      token: p = softmax(depth_router(embedding)) over depths 1..N_r; depth =
        argmax + 1, g = p[depth - 1] scales the token's delta at each of its
        recursions; attention at recursion r among the tokens with depth > r
        (a key mask over the (B, T) layout). Objective: LM + balance *
        N_r * sum_d f_d * mean(p_d).
    forward returns (logits, objective); self.last_lm is the plain LM loss and
    self.last_paths (B*T, N_r) int64 holds 1 where the token ran recursion r.
    """

    def __init__(self, cfg):
        _enum(cfg.router, ("expert", "token"), "router")
        if not 0 < cfg.capacity <= 1 or cfg.n_recursions < 1 or cfg.cycle < 1:
            raise ValueError(f"TorchMoR: invalid config {cfg}")
        super().__init__(GPTConfig(**{**cfg.gpt.__dict__, "n_layer": cfg.cycle}))
        self.mcfg = cfg
        C, R = cfg.gpt.n_embd, cfg.n_recursions
        if cfg.router == "expert":
            self.routers = nn.ModuleDict({str(r): nn.Linear(C, 1, bias=False) for r in range(1, R)})
        else:
            self.depth_router = nn.Linear(C, R)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.startswith("routers.") or name.startswith("depth_router."):
                    p.zero_() if name.endswith("bias") else p.normal_(0.0, 0.02)
        self.last_lm = None
        self.last_paths = None

    def capacity_k(self, T, r):
        k = T
        for _ in range(r):
            k = min(max(math.ceil(self.mcfg.capacity * k - 1e-9), 1), k)
        return k

    def head(self, x):
        h = self.ln_f(x)
        return h @ self.wte.weight.t() if self.cfg.tied_head else self.lm_head(h)

    def _expert(self, x, paths):
        """The top-k recursions 1..N_r-1 of x (B, T, C); returns (x, sum of the BCE terms)."""
        B, T, C = x.shape
        pos, aux = None, None
        for r in range(1, self.mcfg.n_recursions):
            k = self.capacity_k(T, r)
            xa = x if pos is None else torch.gather(x, 1, pos.unsqueeze(-1).expand(B, pos.shape[1], C))
            s = self.routers[str(r)](xa).squeeze(-1)                              # (B, kp)
            with torch.no_grad():
                sel = torch.topk(s, k, dim=1, sorted=False).indices.sort(dim=1).values  # (B, k) ascending
                target = torch.zeros_like(s).scatter_(1, sel, 1.0)
            bce = F.binary_cross_entropy_with_logits(s, target)
            aux = bce if aux is None else aux + bce
            w = torch.sigmoid(torch.gather(s, 1, sel)).unsqueeze(-1)             # (B, k, 1)
            pos = sel if pos is None else torch.gather(pos, 1, sel)               # (B, k) positions
            idx = pos.unsqueeze(-1).expand(B, k, C)
            for blk in self.blocks:
                x = x.scatter_add(1, idx, blk(torch.gather(x, 1, idx)) * w)
            paths.view(B, T, -1)[:, :, r].scatter_(1, pos, 1)
        return x, aux

    def _token(self, x, paths):
        """Token-choice recursions of x (B, T, C); returns (x, balance term)."""
        B, T, C = x.shape
        R = self.mcfg.n_recursions
        p = F.softmax(self.depth_router(x), dim=-1)                               # (B, T, R)
        choice = torch.argmax(p.detach(), dim=-1)                                 # first maximum
        g = torch.gather(p, -1, choice.unsqueeze(-1))                             # (B, T, 1)
        f = F.one_hot(choice, R).to(p.dtype).mean(dim=(0, 1))
        balance = (p.mean(dim=(0, 1)) * f).sum() * R
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        eye = torch.eye(T, dtype=torch.bool, device=x.device)
        for r in range(R):
            active = choice >= r                                                  # (B, T): depth > r
            if not bool(active.any()):
                break
            allowed = (causal & active.unsqueeze(1)) | eye                        # idle rows see themselves
            for blk in self.blocks:
                x = x + torch.where(active.unsqueeze(-1), masked_block(blk, x, allowed) * g, 0.0)
            paths[:, r] = active.reshape(-1).to(torch.int64)
        return x, balance

    def forward(self, idx, targets=None):
        B, T = idx.shape
        if T > self.cfg.block_size:
            raise ValueError(f"TorchMoR: sequence length {T} exceeds block_size {self.cfg.block_size}")
        pos = torch.arange(T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        paths = torch.zeros(B * T, self.mcfg.n_recursions, dtype=torch.int64, device=idx.device)
        if self.mcfg.router == "token":
            x, term = self._token(x, paths)
            weight = self.mcfg.balance
        else:
            for blk in self.blocks:                                               # recursion 0: every token, g = 1
                x = x + blk(x)
            paths[:, 0] = 1
            x, term = self._expert(x, paths)
            weight = self.mcfg.aux_weight
        self.last_paths = paths.cpu()
        logits = self.head(x)
        if targets is None:
            return logits, None
        lm = F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(B * T))
        self.last_lm = lm.detach()
        return logits, (lm if term is None else lm + term * weight)
