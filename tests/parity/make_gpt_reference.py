#!/usr/bin/python3
"""PyTorch reference values for the dense GPT: forward, backward, 3 AdamW steps.

Run with Debian's interpreter (the one that imports torch):

    /usr/bin/python3 tests/parity/make_gpt_reference.py tests/parity

It writes OUT_DIR/gpt_reference_f64.safetensors and
OUT_DIR/gpt_reference_f32.safetensors; the C++ parity test loads them, builds
models::GPT with the same config and weights, and compares. Regenerating gives
identical files, byte for byte (one thread, fixed seeds).

Model: L=2, H=2, C=32, block_size=16, vocab 256, tied head, dropout 0, GPT-2
init drawn after torch.manual_seed(0) in f32 (the f64 file holds the very same
initial weights, converted exactly). Batch: B=2, T=16, idx and targets from
torch.randint(0, 256) with a generator seeded 1234.

Contents of each file (dtype of the file for every float tensor):
  param.<name>    initial weights (every state-dict name of the model)
  idx, targets    (B, T) I64
  logits          (B, T, V) of the initial model
  loss            0-dim mean cross-entropy of the initial model
  grad.<name>     gradient of loss with respect to every parameter
  step_losses     (3,) loss computed before each of 3 AdamW steps on the same
                  batch (step_losses[0] == loss)
  after3.<name>   the parameters after the 3rd step
Metadata (strings): model config, batch shape, optimizer hyper-parameters.
AdamW: lr 1e-3, betas (0.9, 0.95), eps 1e-8, weight_decay 0.1 only on
parameters with dim >= 2 (wte, wpe, Linear weights), foreach=False.
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from torch_models import GPTConfig, TorchGPT, adamw_param_groups, write_safetensors  # noqa: E402

torch.set_num_threads(1)  # one summation order: the files must not depend on the thread count

CONFIG = GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=256, dropout=0.0, tied_head=True)
BATCH, SEQ = 2, 16
LR, BETA1, BETA2, EPS, WEIGHT_DECAY = 1e-3, 0.9, 0.95, 1e-8, 0.1
STEPS = 3
MODEL_SEED, BATCH_SEED = 0, 1234


def numpy_of(t):
    """A detached CPU tensor as a numpy array."""
    return t.detach().cpu().numpy().copy()


def make_batch():
    """The fixed (idx, targets), both (BATCH, SEQ) int64, independent of dtype."""
    g = torch.Generator().manual_seed(BATCH_SEED)
    idx = torch.randint(0, CONFIG.vocab_size, (BATCH, SEQ), generator=g, dtype=torch.int64)
    targets = torch.randint(0, CONFIG.vocab_size, (BATCH, SEQ), generator=g, dtype=torch.int64)
    return idx, targets


def reference(dtype):
    """All tensors of one reference file, in the order they are written."""
    torch.manual_seed(MODEL_SEED)
    model = TorchGPT(CONFIG)  # initialised in f32 ...
    model = model.to(dtype)  # ... and converted (exact for f64)
    model.train()  # dropout is 0: train and eval give the same numbers
    idx, targets = make_batch()
    out = {}
    for name, p in model.named_parameters():
        out["param." + name] = numpy_of(p)
    out["idx"] = numpy_of(idx)
    out["targets"] = numpy_of(targets)

    logits, loss = model(idx, targets)
    loss.backward()
    out["logits"] = numpy_of(logits)
    out["loss"] = numpy_of(loss).reshape(())
    for name, p in model.named_parameters():
        out["grad." + name] = numpy_of(p.grad)

    opt = torch.optim.AdamW(adamw_param_groups(model, WEIGHT_DECAY), lr=LR, betas=(BETA1, BETA2),
                            eps=EPS, foreach=False)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad(set_to_none=True)
        _, loss = model(idx, targets)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    out["step_losses"] = np.array(losses, dtype=numpy_of(loss).dtype)
    for name, p in model.named_parameters():
        out["after3." + name] = numpy_of(p)
    return out


def metadata(dtype_name):
    """The config and optimizer hyper-parameters as strings."""
    return {
        "dtype": dtype_name,
        "n_layer": CONFIG.n_layer, "n_head": CONFIG.n_head, "n_embd": CONFIG.n_embd,
        "block_size": CONFIG.block_size, "vocab_size": CONFIG.vocab_size,
        "dropout": CONFIG.dropout, "tied_head": "true" if CONFIG.tied_head else "false",
        "batch": BATCH, "seq_len": SEQ,
        "optimizer": "adamw", "lr": LR, "beta1": BETA1, "beta2": BETA2, "eps": EPS,
        "weight_decay": WEIGHT_DECAY, "weight_decay_on": "dim>=2", "steps": STEPS,
        "model_seed": MODEL_SEED, "batch_seed": BATCH_SEED,
        "generator": "tests/parity/make_gpt_reference.py (torch %s)" % torch.__version__,
    }


def main():
    """Writes both reference files into the directory given on the command line."""
    if len(sys.argv) != 2:
        sys.exit("usage: /usr/bin/python3 tests/parity/make_gpt_reference.py OUT_DIR")
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    for dtype, name in ((torch.float64, "f64"), (torch.float32, "f32")):
        path = os.path.join(out_dir, f"gpt_reference_{name}.safetensors")
        tensors = reference(dtype)
        write_safetensors(path, tensors, metadata(name))
        print(f"wrote {path}: {len(tensors)} tensors, loss {float(tensors['loss']):.6f}, "
              f"step losses {[round(float(x), 6) for x in tensors['step_losses']]}")


if __name__ == "__main__":
    main()
