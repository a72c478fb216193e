#!/usr/bin/python3
"""safetensors interoperability between dyngrad and the Python ecosystem.

Run by tests/test_safetensors.cpp with Debian's /usr/bin/python3 (numpy, torch):

  safetensors_interop.py check FILE
      FILE was written by dyngrad (SafetensorsInterop.CppToPython). Parse it
      with json + numpy only, following the format spec, and compare every
      tensor with values recomputed here independently (expected_from_cpp).
      Exit 0 when everything matches, 3 with a message on a mismatch.

  safetensors_interop.py write FILE EXPECTED_JSON
      Write FILE from PyTorch tensors (a seeded torch.nn.Linear, int64 with
      values beyond 2^53, ...) with a hand-written safetensors encoder, and
      EXPECTED_JSON holding each tensor's dtype, shape and exact values, which
      the C++ side loads and compares (SafetensorsInterop.PythonToCpp).

No `safetensors` package is used: the point is that both sides follow the
published format, not one library.
"""
import json
import struct
import sys

import numpy as np

NP_DTYPE = {"F32": "<f4", "F64": "<f8", "I64": "<i8", "I32": "<i4", "BOOL": "|b1"}
FILE_DTYPE = {np.dtype(v): k for k, v in NP_DTYPE.items()}
MISMATCH = 3  # exit status for "read fine, values differ" (an exception exits with 1)


def expected_from_cpp():
    """The tensors the C++ test writes; keep in sync with CppToPython there."""
    i12 = np.arange(12)
    return {
        "f32_matrix": (i12 * 0.25 - 1.5).astype(np.float32).reshape(3, 4),
        "f64_cube": (i12 / 3.0).reshape(2, 3, 2),
        "i64_big": np.array([-(2**62), -1, 0, 2**40 + 7, 2**63 - 1], dtype=np.int64),
        "i32_vec": np.array([-(2**31), -7, 123456, 2**31 - 1], dtype=np.int32),
        "bool_mask": (np.arange(10) % 3 == 0).reshape(2, 5),
        "scalar": np.array(3.5, dtype=np.float32),
        "empty": np.zeros((0, 5), dtype=np.float32),
        "transposed": np.arange(6, dtype=np.float64).reshape(2, 3).T,
    }, {"producer": "dyngrad", "note": "interop \u2713"}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    data = raw[8 + n :]
    metadata = header.pop("__metadata__", {})
    tensors, spans = {}, []
    for name, info in header.items():
        begin, end = info["data_offsets"]
        dt = np.dtype(NP_DTYPE[info["dtype"]])
        arr = np.frombuffer(data[begin:end], dtype=dt).reshape(info["shape"])
        tensors[name] = (info["dtype"], arr, begin)
        spans.append((begin, end))
    return n, len(data), tensors, spans, metadata


def check(path):
    n, data_len, tensors, spans, metadata = read_safetensors(path)
    errors = []
    if n % 8:
        errors.append(f"header length {n} is not a multiple of 8")
    spans.sort()
    covered = 0
    for begin, end in spans:
        if begin != covered:
            errors.append(f"data section not tiled: span [{begin}, {end}) after byte {covered}")
        covered = end
    if covered != data_len:
        errors.append(f"data section is {data_len} bytes, tensors cover {covered}")
    expected, expected_meta = expected_from_cpp()
    if metadata != expected_meta:
        errors.append(f"metadata {metadata!r} != {expected_meta!r}")
    if sorted(tensors) != sorted(expected):
        errors.append(f"tensor names {sorted(tensors)} != {sorted(expected)}")
    for name, want in expected.items():
        if name not in tensors:
            continue
        dtype, got, begin = tensors[name]
        if dtype != FILE_DTYPE[want.dtype]:
            errors.append(f"{name}: dtype {dtype} vs expected {want.dtype}")
        if got.shape != want.shape:
            errors.append(f"{name}: shape {got.shape} vs expected {want.shape}")
        elif not np.array_equal(got, want):
            errors.append(f"{name}: values differ\n  got      {got.ravel()[:8]}\n  expected {want.ravel()[:8]}")
        if begin % got.itemsize:
            errors.append(f"{name}: offset {begin} not aligned to {got.itemsize}")
    for e in errors:
        print(f"safetensors_interop check {path}: {e}", file=sys.stderr)
    return MISMATCH if errors else 0


def write(path, expected_path):
    import torch

    torch.manual_seed(0)
    linear = torch.nn.Linear(4, 3)
    tensors = {
        "linear.weight": linear.weight.detach(),
        "linear.bias": linear.bias.detach(),
        "tokens": torch.tensor([[0, -1, 2**53 + 1], [2**62, -(2**63), 7]], dtype=torch.int64),
        "f64": torch.randn(2, 2, dtype=torch.float64),
        "i32": torch.tensor([-3, 2**31 - 1], dtype=torch.int32),
        "mask": torch.tensor([True, False, True]),
        "scalar": torch.tensor(-2.25),
        "empty": torch.zeros(3, 0),
        # A transposed view: torch writes its contiguous values, like dyngrad.
        "weight_t": linear.weight.detach().t(),
    }
    names = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64", torch.int32: "I32", torch.bool: "BOOL"}
    header, blobs, offset = {"__metadata__": {"format": "pt", "source": "torch"}}, [], 0
    for name, t in tensors.items():  # insertion order, no alignment padding: a reader must not need it
        blob = t.contiguous().numpy().astype(NP_DTYPE[names[t.dtype]]).tobytes()
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode("utf-8")  # unpadded: dyngrad must accept any length
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    # Exact values: float32 -> Python float is exact and repr() round-trips a
    # double, so the C++ side can compare with ==; ints stay ints in JSON.
    expected = {
        name: {"dtype": names[t.dtype], "shape": list(t.shape), "values": t.contiguous().reshape(-1).tolist()}
        for name, t in tensors.items()
    }
    with open(expected_path, "w") as f:
        json.dump({"metadata": header["__metadata__"], "tensors": expected}, f)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "check":
        sys.exit(check(sys.argv[2]))
    if len(sys.argv) == 4 and sys.argv[1] == "write":
        sys.exit(write(sys.argv[2], sys.argv[3]))
    print(__doc__, file=sys.stderr)
    sys.exit(2)
