#!/usr/bin/env python3
"""Tokenizer speed against llama.cpp's llama-tokenize on 1 MB of mixed text, same vocabulary
files, same text, in one run; also checks that both produce the same ids.

    bench/tokenize_bench.py [--peer DIR] [--reps N] [--vocabs llama-spm,qwen2,...]

The text (written to a temporary file) cycles through every input of llama.cpp's tokenizer
test vectors (many scripts, emoji, code, numbers, whitespace runs) and TinyStories-style
prose, cut to 1,000,000 bytes at a character boundary.

Both tools run as processes that load the vocabulary, tokenize the file and print the ids.
A run on a one-byte file measures loading and start-up; the tokenize time quoted for each is
median(1 MB runs) - median(one-byte runs). TapML also reports its own encode time (--stats),
quoted separately. Ratio > 1: TapML is faster.
"""
import argparse
import glob
import json
import os
import re
import statistics
import sys
import tempfile

from bench_common import DEFAULT_TAPML, shared_dir, timed

DEFAULT_VOCABS = "llama-spm,llama-bpe,qwen2,gpt-2,deepseek-coder,falcon,gemma-4,phi-3"
SEP = "\n__ggml_vocab_test__\n"


def mixed_text(shared, size=1_000_000):
    parts = []
    for path in sorted(glob.glob(os.path.join(shared, "vocab", "*.inp"))):
        with open(path, encoding="utf-8") as f:
            for piece in f.read().split(SEP):
                if piece and piece not in parts:
                    parts.append(piece)
    for path in sorted(glob.glob(os.path.join(shared, "golden", "stories260K", "greedy_*.json"))):
        with open(path, encoding="utf-8") as f:
            text = json.load(f).get("text")
            if isinstance(text, str) and text:
                parts.append(text)
    if not parts:
        sys.exit(f"tokenize_bench: no test vectors under {shared}/vocab (set TAPML_SHARED)")
    out, n, i = [], 0, 0
    while n < size:
        piece = parts[i % len(parts)] + ("\n" if i % 3 == 0 else " ")
        out.append(piece)
        n += len(piece.encode("utf-8"))
        i += 1
    data = "".join(out).encode("utf-8")[:size]
    while data and (data[-1] & 0xC0) == 0x80:  # do not end inside a character
        data = data[:-1]
    if data and data[-1] >= 0xC0:
        data = data[:-1]
    return data


def median_of(cmd, reps):
    walls, last = [], None
    for _ in range(reps):
        wall, r = timed(cmd)
        if r.returncode != 0:
            sys.exit(f"tokenize_bench: {' '.join(cmd)} failed: {r.stderr.strip()[-400:]}")
        walls.append(wall)
        last = r
    return statistics.median(walls), last


def ids_of(text):
    return [int(x) for x in re.findall(r"-?\d+", text)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tapml", default=DEFAULT_TAPML)
    ap.add_argument("--peer", default=os.environ.get("PEER", "/work/peer") + "/build/bin",
                    help="folder holding llama-tokenize (../shared/peer/build.sh builds it)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--vocabs", default=DEFAULT_VOCABS)
    a = ap.parse_args()
    peer = os.path.join(a.peer, "llama-tokenize")
    for exe in (a.tapml, peer):
        if not os.access(exe, os.X_OK):
            sys.exit(f"tokenize_bench: {exe} not found or not executable")
    shared = shared_dir()
    data = mixed_text(shared)
    with tempfile.TemporaryDirectory() as tmp:
        big, tiny = os.path.join(tmp, "mixed.txt"), os.path.join(tmp, "tiny.txt")
        with open(big, "wb") as f:
            f.write(data)
        with open(tiny, "wb") as f:
            f.write(b"a")
        print(f"text: {len(data)} bytes of mixed text; {a.reps} runs each; medians")
        print(f"{'vocabulary':16} {'tokens':>8} {'tapml ms':>9} {'(encode)':>9} {'llama ms':>9} {'ratio':>6}  ids")
        for name in a.vocabs.split(","):
            vocab = os.path.join(shared, "vocab", f"ggml-vocab-{name}.gguf")
            t_cmd = [a.tapml, "tokenize", "--model", vocab, "--stats", "--file"]
            p_cmd = [peer, "-m", vocab, "--ids", "--log-disable", "--no-bos", "--no-parse-special", "-f"]
            t_big, t_run = median_of(t_cmd + [big], a.reps)
            t_tiny, _ = median_of(t_cmd + [tiny], a.reps)
            p_big, p_run = median_of(p_cmd + [big], a.reps)
            p_tiny, _ = median_of(p_cmd + [tiny], a.reps)
            m = re.search(r"tokens in ([0-9.]+) ms", t_run.stderr)
            encode = float(m.group(1)) if m else float("nan")
            t_ids, p_ids = ids_of(t_run.stdout), ids_of(p_run.stdout.strip().splitlines()[-1])
            same = "same" if t_ids == p_ids else f"DIFFER ({len(t_ids)} vs {len(p_ids)})"
            t_ms, p_ms = (t_big - t_tiny) * 1e3, (p_big - p_tiny) * 1e3
            print(f"{name:16} {len(t_ids):8d} {t_ms:9.1f} {encode:9.1f} {p_ms:9.1f} {p_ms / t_ms:6.2f}  {same}")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
