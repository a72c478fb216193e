#!/usr/bin/python3
"""PyTorch reference values for the routed models (MoD, MoB, MoE), f64.

Run with Debian's interpreter (the one that imports torch); the ctest
`routed_parity` (tests/parity/run_routed_parity.sh) runs it before every test
run, into the build directory:

    /usr/bin/python3 tests/parity/make_routed_reference.py OUT_DIR

Exits 77 (ctest's "skipped") when torch or numpy cannot be imported.

It writes one file per case into OUT_DIR, from the reference models of
bench/torch_models.py (TorchMoD, TorchMoB, TorchMoE), all f64, one thread:

  routed_reference_mod.safetensors        MoD: L=4 (blocks 1, 3 routed), capacity 0.25
                                          (k = 4 of T = 16), raw router weight, aux +
                                          predictor BCE
  routed_reference_mob_step.safetensors   MoB: n=3 blocks, max_depth 4, ponder, scope
                                          step, weight q
  routed_reference_mob_block.safetensors  the same with scope block and weight
                                          straight-through
  routed_reference_moe_top1.safetensors   MoE: 4 experts in every block, top-1, dropless
  routed_reference_moe_top2.safetensors   MoE: 3 experts in blocks 1, 3 (moe_every 2),
                                          top-2, capacity factor 0.75 (tokens dropped)

All: H=2, C=32, block_size 16, B=2, T=16. Weights: GPT-2 init after
torch.manual_seed(0), then the routing parameters made decisive, so the
routes are varied: MoD router weights N(0, 0.3); MoB gate weight N(0, 0.4)
and step bias N(0, 1), so tokens halt at different steps and use every block
(the script checks both and fails otherwise); MoE router weights N(0, 0.5), so
every expert is used and, with capacity, some assignments are dropped (checked
too). Batch: torch.randint(0, 256)
with a generator seeded 1234.

Contents of each file:
  param.<name>   the weights (dyngrad's state-dict names)
  x, y           (B, T) I64
  objective      0-dim training objective (what the model's loss() returns as
                 objective, training mode)
  lm             0-dim LM loss (MoD: without the aux terms; MoB: the objective)
  grad.<name>    gradient of the objective for every parameter
  route.paths    MoB only: (B*T, max_depth + 1) I64, the block each token ran at
                 each step, -1 where it returned, -2 after
  route.experts  MoE only: (MoE layers, B*T, k) I64, the expert of every
                 assignment, -1 where capacity dropped it
Metadata: model_kind, model_config (the JSON dyngrad's to_json writes).
"""
import os
import sys

try:
    import numpy as np  # noqa: F401
    import torch
except ImportError as e:  # ctest reads 77 as "skipped"
    print(f"make_routed_reference.py: skipped: {e} (run it with Debian's /usr/bin/python3 + python3-torch)")
    sys.exit(77)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from torch_models import (GPTConfig, MoBConfig, MoDConfig, MoEConfig, config_to_json,  # noqa: E402
                          make_torch_model, write_safetensors)

torch.set_num_threads(1)

GPT = GPTConfig(n_layer=4, n_head=2, n_embd=32, block_size=16, vocab_size=256, dropout=0.0, tied_head=True)
BATCH, SEQ = 2, 16
CASES = {
    "mod": ("mod", MoDConfig(gpt=GPT, capacity=0.25)),
    "mob_step": ("mob", MoBConfig(gpt=GPT, n_blocks=3, max_depth=4, gate_init="uniform", attn_scope="step")),
    "mob_block": ("mob", MoBConfig(gpt=GPT, n_blocks=3, max_depth=4, gate_init="uniform", attn_scope="block",
                                   weight="straight-through")),
    "moe_top1": ("moe", MoEConfig(gpt=GPT, n_experts=4, top_k=1)),
    "moe_top2": ("moe", MoEConfig(gpt=GPT, n_experts=3, top_k=2, moe_every=2, capacity_factor=0.75)),
}


def numpy_of(t):
    return t.detach().cpu().numpy().copy()


def reference(kind, cfg):
    """The tensors of one reference file."""
    torch.manual_seed(0)
    model = make_torch_model(kind, cfg).to(torch.float64)
    with torch.no_grad():
        if kind == "mod":
            for r in model.routers.values():
                r.proj.weight.normal_(0.0, 0.3)
        elif kind == "moe":
            for layer in model.moe.values():
                layer.router.weight.normal_(0.0, 0.5)
        else:
            model.gate.weight.normal_(0.0, 0.4)
            model.step_bias.normal_(0.0, 1.0)
    model.train()
    g = torch.Generator().manual_seed(1234)
    x = torch.randint(0, GPT.vocab_size, (BATCH, SEQ), generator=g, dtype=torch.int64)
    y = torch.randint(0, GPT.vocab_size, (BATCH, SEQ), generator=g, dtype=torch.int64)
    out = {"param." + name: numpy_of(p) for name, p in model.named_parameters()}
    out["x"], out["y"] = numpy_of(x), numpy_of(y)
    _, objective = model(x, y)
    objective.backward()
    out["objective"] = numpy_of(objective).reshape(())
    out["lm"] = numpy_of(model.last_lm if kind in ("mod", "moe") else objective).reshape(())
    for name, p in model.named_parameters():
        out["grad." + name] = numpy_of(p.grad)
    if kind == "mob":
        paths = model.last_paths
        depth = (paths >= 0).sum(dim=1)
        used = set(paths[paths >= 0].tolist())
        if len(set(depth.tolist())) < 2 or used != set(range(cfg.n_blocks)):
            sys.exit(f"make_routed_reference.py: the MoB routes are not varied enough to test anything "
                     f"(depths {sorted(set(depth.tolist()))}, blocks used {sorted(used)})")
        out["route.paths"] = numpy_of(paths)
    if kind == "moe":
        routes = model.last_routes
        used = set(routes[routes >= 0].tolist())
        dropped = int((routes < 0).sum())
        if used != set(range(cfg.n_experts)) or (cfg.capacity_factor > 0) != (dropped > 0):
            sys.exit(f"make_routed_reference.py: the MoE routes are not varied enough to test anything "
                     f"(experts used {sorted(used)}, {dropped} assignments dropped)")
        out["route.experts"] = numpy_of(routes)
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: /usr/bin/python3 tests/parity/make_routed_reference.py OUT_DIR")
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    for name, (kind, cfg) in CASES.items():
        tensors = reference(kind, cfg)
        path = os.path.join(out_dir, f"routed_reference_{name}.safetensors")
        meta = {"model_kind": kind, "model_config": config_to_json(kind, cfg, "f64"),
                "generator": "tests/parity/make_routed_reference.py (torch %s)" % torch.__version__}
        write_safetensors(path, tensors, meta)
        extra = ""
        if "route.paths" in tensors:
            extra = f", mean depth {float((tensors['route.paths'] >= 0).sum(axis=1).mean()):.3f}"
        if "route.experts" in tensors:
            extra = f", {int((tensors['route.experts'] < 0).sum())} of {tensors['route.experts'].size} dropped"
        print(f"wrote {path}: objective {float(tensors['objective']):.12f}{extra}")


if __name__ == "__main__":
    main()
