#!/usr/bin/env python3
"""Reads a test exported by `tapml corpus export` with numpy alone (no safetensors package)
and prints, as JSON, each tensor's dtype, shape, float64 sum and the sum of its raw bytes.

The corpus tests compare that against the C++ side; it also shows numpy users how little it
takes to read an export:  python3 read_export.py FOLDER
"""
import json
import struct
import sys

import numpy as np

# Safetensors dtypes an export may hold. numpy has no bfloat16: its bits are the top half of
# a float32, so they are widened by a shift.
NUMPY_DTYPES = {"F32": "<f4", "F16": "<f2", "I32": "<i4", "BF16": "<u2"}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    body = data[8 + header_len :]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = body[begin:end]
        a = np.frombuffer(raw, dtype=NUMPY_DTYPES[info["dtype"]])
        if info["dtype"] == "BF16":
            a = (a.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = (info["dtype"], a.reshape(info["shape"]), raw)
    return header.get("__metadata__", {}), tensors


def main():
    folder = sys.argv[1]
    with open(folder + "/manifest.json") as f:
        manifest = json.load(f)
    metadata, tensors = read_safetensors(folder + "/" + manifest.get("tensors_file", "tensors.safetensors"))
    out = {"op": manifest["op"], "metadata": metadata, "tensors": {}}
    for entry in manifest["inputs"] + manifest["outputs"]:
        dtype, a, raw = tensors[entry["tensor"]]
        out["tensors"][entry["tensor"]] = {
            "dtype": dtype,
            "shape": list(a.shape),
            "sum": float(a.astype(np.float64).sum()),
            "byte_sum": int(np.frombuffer(raw, dtype=np.uint8).astype(np.uint64).sum()),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
