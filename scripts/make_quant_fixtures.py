#!/usr/bin/python3
"""Writes tests/data/quant/: ggml's quantized blocks as llama.cpp makes them and gguf-py reads
them, so that tests/core/quant_test.cpp can check TapML's core/quant against code we did not
write. Run once; its output is committed.

    scripts/make_quant_fixtures.py [--peer /work/peer] [--build build] [--out tests/data/quant]

Needs the llama.cpp peer (PEER/build/bin: llama-quantize and libggml-base.so; PEER/src/gguf-py),
numpy, libxxhash, and TapML's bench/make_random_gguf (built in --build).

Three kinds of fixtures, all listed in manifest.json:

  llama-quantize  bench/make_random_gguf writes a small f32 llama model (dim 256, 2 layers,
                  seed 3); llama-quantize, without an imatrix, turns it into one file per ftype
                  (Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K_M Q4_K_M Q5_K_M Q6_K). For every block
                  type in those files, up to two whole tensors (the smallest, distinct names)
                  are kept: the raw blocks, and the f32 source rows of the same tensor from the
                  f32 model (up to SOURCE_ELEMS elements, source_<tensor>.f32), to check
                  quantize_row against llama-quantize bit for bit.
  edge            hand-made hard rows (zeros, constants, ties, outliers, tiny and large values,
                  one-signed rows) quantized to every type by the peer's ggml_quantize_chunk, the
                  function llama-quantize calls (edge.f32 holds the rows).
  random-bytes    blocks of random bytes, f16 fields replaced by random finite halves: every bit
                  pattern of the quants and scales, for dequantize_row.

For every fixture the manifest gives gguf-py's dequantized f32 output (gguf.quants.dequantize):
the XXH3_64bits of its little-endian bytes (f32_xxh3_64, 16 hex digits) and its first HEAD
values' float bit patterns (head: 8 hex digits each, concatenated), not the whole output, to
keep the folder small.
Blocks files are named <type>_<tensor>.blocks (type as ggml names it: q4_0, q4_K, ...).
"""
import argparse
import ctypes
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

FTYPES = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K"]
# ggml type id -> (name, elements per block, bytes per block)
TYPES = {
    2: ("q4_0", 32, 18),
    3: ("q4_1", 32, 20),
    6: ("q5_0", 32, 22),
    7: ("q5_1", 32, 24),
    8: ("q8_0", 32, 34),
    10: ("q2_K", 256, 84),
    11: ("q3_K", 256, 110),
    12: ("q4_K", 256, 144),
    13: ("q5_K", 256, 176),
    14: ("q6_K", 256, 210),
}
PER_TYPE = 2  # whole tensors kept per block type from the llama-quantize files
MAX_TENSOR_ELEMS = 65536  # only tensors this small are kept
SOURCE_ELEMS = 32768  # f32 source kept per tensor for the quantize check
HEAD = 256
RANDOM_BLOCKS = 16
MODEL_ARGS = ["--dim", "256", "--layers", "2", "--heads", "4", "--kv-heads", "2", "--hidden",
              "512", "--vocab", "512", "--dtype", "f32", "--seed", "3"]


def xxh3_64(data: bytes) -> str:
    lib = ctypes.CDLL("libxxhash.so.0")
    lib.XXH3_64bits.restype = ctypes.c_uint64
    lib.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    return "%016x" % lib.XXH3_64bits(data, len(data))


def describe_output(gguf, blocks: np.ndarray, type_id: int) -> dict:
    out = gguf.quants.dequantize(blocks.reshape(-1), gguf.GGMLQuantizationType(type_id))
    out = np.ascontiguousarray(out, dtype="<f4").reshape(-1)
    return {
        "elems": int(out.size),
        "f32_xxh3_64": xxh3_64(out.tobytes()),
        "head": "".join("%08x" % v for v in out[:HEAD].view("<u4")),
    }


def edge_rows() -> np.ndarray:
    """Rows of 256 values on which quantizers take their rare branches."""
    rng = np.random.default_rng(7)
    rows = []
    rows.append(np.zeros(256))
    rows.append(np.full(256, 0.5))
    rows.append(np.full(256, -1.25))
    r = rng.normal(0, 1e-3, 256)
    r[37] = 1e3  # one outlier
    rows.append(r)
    r = rng.normal(0, 1, 256)
    r[::16] = 0  # a zero in every group of 16
    r[200:232] = 0  # and a zero legacy block
    rows.append(r)
    rows.append(rng.normal(0, 1e-20, 256))  # below GROUP_MAX_EPS
    rows.append(rng.normal(0, 1e-6, 256))  # scales in f16's subnormal range
    rows.append(rng.normal(0, 3e3, 256))  # large values
    rows.append(np.abs(rng.normal(1, 1, 256)))  # all positive: min clamps to 0
    rows.append(-np.abs(rng.normal(1, 1, 256)))  # all negative
    rows.append(np.tile(np.arange(-8, 8, 0.5), 8) + 0.25)  # many exact halves after scaling
    rows.append(np.tile(np.arange(-16, 16), 8).astype(float))  # integers
    rows.append(rng.laplace(0, 1, 256))  # heavy tails
    r = rng.normal(0, 1, 256)
    r[rng.random(256) < 0.9] = 0  # sparse
    rows.append(r)
    rows.append(rng.uniform(-1, 1, 256))
    rows.append(np.concatenate([rng.normal(0, 1, 128), rng.normal(0, 1e-4, 128)]))
    return np.asarray(rows, dtype=np.float32)


def random_blocks(type_id: int, n: int, rng) -> np.ndarray:
    """n blocks of random bytes whose f16 fields hold finite halves of moderate size."""
    name, _, size = TYPES[type_id]
    b = rng.integers(0, 256, (n, size), dtype=np.uint8)
    half_offsets = {  # byte offsets of the f16 fields in each block
        "q4_0": [0], "q4_1": [0, 2], "q5_0": [0], "q5_1": [0, 2], "q8_0": [0],
        "q2_K": [80, 82], "q3_K": [108], "q4_K": [0, 2], "q5_K": [0, 2], "q6_K": [208],
    }[name]
    for off in half_offsets:
        h = (rng.uniform(-2, 2, n) * 10.0 ** rng.integers(-6, 2, n)).astype(np.float16)
        b[:, off:off + 2] = h.view(np.uint8).reshape(n, 2)
    return b


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--peer", default="/work/peer")
    ap.add_argument("--build", default=os.path.join(root, "build"))
    ap.add_argument("--out", default=os.path.join(root, "tests", "data", "quant"))
    a = ap.parse_args()

    sys.path.insert(0, os.path.join(a.peer, "src", "gguf-py"))
    import gguf  # noqa: E402  (the peer's gguf-py)

    bindir = os.path.join(a.peer, "build", "bin")
    quantize = os.path.join(bindir, "llama-quantize")
    make_model = os.path.join(a.build, "bench", "make_random_gguf")
    for p in (quantize, make_model):
        if not os.access(p, os.X_OK):
            print(f"make_quant_fixtures: {p} is missing", file=sys.stderr)
            return 2
    os.makedirs(a.out, exist_ok=True)
    for f in os.listdir(a.out):
        os.remove(os.path.join(a.out, f))

    manifest = {"peer": {}, "files": {}, "fixtures": []}
    with tempfile.TemporaryDirectory() as tmp:
        f32_path = os.path.join(tmp, "f32.gguf")
        subprocess.run([make_model, "--out", f32_path, *MODEL_ARGS], check=True)
        source = {t.name: np.asarray(t.data, dtype=np.float32).reshape(-1)
                  for t in gguf.GGUFReader(f32_path).tensors}

        # Candidates per block type: (elements, ftype order, tensor, ftype, blocks). The
        # smallest tensors are taken first, from the file whose ftype names the type if it has one.
        candidates: dict[int, list] = {}
        for order, ftype in enumerate(FTYPES):
            path = os.path.join(tmp, ftype + ".gguf")
            log = subprocess.run([quantize, f32_path, path, ftype, "2"], check=True,
                                 capture_output=True, text=True)
            for line in (log.stdout + log.stderr).splitlines():
                if line.startswith("version:"):
                    manifest["peer"]["llama_quantize"] = line.split(":", 1)[1].strip()
            mix = manifest["files"].setdefault(ftype, {})
            for t in gguf.GGUFReader(path).tensors:
                tid = int(t.tensor_type)
                tname = TYPES[tid][0] if tid in TYPES else t.tensor_type.name.lower()
                mix[tname] = mix.get(tname, 0) + 1
                if tid in TYPES and int(t.n_elements) <= MAX_TENSOR_ELEMS:
                    blocks = np.asarray(t.data, dtype=np.uint8).reshape(-1).copy()
                    candidates.setdefault(tid, []).append(
                        (int(t.n_elements), order, t.name, ftype, blocks))

        written_sources = set()
        for tid in sorted(candidates):
            name, qk, size = TYPES[tid]
            taken = []
            def rank(c):
                return (c[0], not c[3].lower().startswith(name.lower()), c[1], c[2])

            for elems, _, tensor, ftype, blocks in sorted(candidates[tid], key=rank):
                if len(taken) == PER_TYPE or tensor in taken:
                    continue
                taken.append(tensor)
                short = tensor.removesuffix(".weight")
                blocks_file = f"{name}_{short}.blocks"
                blocks.tofile(os.path.join(a.out, blocks_file))
                src_file = f"source_{short}.f32"
                src_elems = min(elems, SOURCE_ELEMS)
                if src_file not in written_sources:
                    source[tensor][:SOURCE_ELEMS].astype("<f4").tofile(os.path.join(a.out, src_file))
                    written_sources.add(src_file)
                entry = {"kind": "llama-quantize", "type": name, "ggml_type": tid,
                         "tensor": tensor, "ftype": ftype, "blocks": blocks_file,
                         "source": src_file, "source_elems": src_elems}
                entry.update(describe_output(gguf, blocks, tid))
                assert entry["elems"] == elems
                manifest["fixtures"].append(entry)

    # Edge rows through the peer's ggml_quantize_chunk (llama-quantize's path, no imatrix).
    ggml = ctypes.CDLL(os.path.join(bindir, "libggml-base.so"))
    ggml.ggml_quantize_chunk.restype = ctypes.c_size_t
    ggml.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                         ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                                         ctypes.c_void_p]
    rows = np.ascontiguousarray(edge_rows(), dtype="<f4")
    rows.tofile(os.path.join(a.out, "edge.f32"))
    for tid, (name, qk, size) in TYPES.items():
        nbytes = rows.size // qk * size
        dst = np.zeros(nbytes, dtype=np.uint8)
        got = ggml.ggml_quantize_chunk(tid, rows.ctypes.data, dst.ctypes.data, 0, rows.shape[0],
                                       rows.shape[1], None)
        assert got == nbytes, (name, got, nbytes)
        blocks_file = f"{name}_edge.blocks"
        dst.tofile(os.path.join(a.out, blocks_file))
        entry = {"kind": "edge", "type": name, "ggml_type": tid, "blocks": blocks_file,
                 "source": "edge.f32", "source_elems": int(rows.size)}
        entry.update(describe_output(gguf, dst, tid))
        manifest["fixtures"].append(entry)

    rng = np.random.default_rng(11)
    for tid, (name, qk, size) in TYPES.items():
        b = random_blocks(tid, RANDOM_BLOCKS, rng)
        blocks_file = f"{name}_random.blocks"
        b.tofile(os.path.join(a.out, blocks_file))
        entry = {"kind": "random-bytes", "type": name, "ggml_type": tid, "blocks": blocks_file}
        entry.update(describe_output(gguf, b, tid))
        manifest["fixtures"].append(entry)

    with open(os.path.join(a.peer, "src", "gguf-py", "pyproject.toml")) as f:
        version = [ln for ln in f if ln.startswith("version")]
    manifest["peer"]["gguf_py"] = version[0].split("=", 1)[1].strip().strip('"') if version else "?"
    with open(os.path.join(a.out, "manifest.json"), "w") as f:  # one fixture a line
        f.write('{"peer": %s,\n "files": %s,\n "fixtures": [\n'
                % (json.dumps(manifest["peer"]), json.dumps(manifest["files"])))
        f.write(",\n".join("  " + json.dumps(e) for e in manifest["fixtures"]))
        f.write("\n]}\n")
    total = sum(os.path.getsize(os.path.join(a.out, f)) for f in os.listdir(a.out))
    kinds = {}
    for e in manifest["fixtures"]:
        kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
    print(f"{len(manifest['fixtures'])} fixtures {kinds}, {total} bytes in {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
