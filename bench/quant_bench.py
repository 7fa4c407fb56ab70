#!/usr/bin/env python3
"""Quantized models: TapML's cpu backend against llama.cpp's llama-bench, same GGUF file,
same thread count, in one run; prefill and decode tokens/s (medians) and the ratio.

    bench/quant_bench.py [--peer DIR] [--threads N] [--models 125m,1b] [--types q8_0,q4_k_m]
                         [-p 128] [-n 32] [-r 5]

The models are made by bench's make_random_gguf (f16, seed 1: "125m" is dim 768, 12
layers, 12 heads, 4 KV heads, FFN 2048, vocab 32000; "1b" is dim 2048, 22 layers, 32 heads,
4 KV heads, FFN 5632, vocab 32000) and quantized by the peer's llama-quantize, so both engines
read the very same blocks. Files go to ${TAPML_BENCH_CACHE:-~/.cache/tapml-bench}.

llama-bench runs `-p P -n 0` (prefill: one batch of P tokens) and `-p 0 -n G` (decode: G
single-token steps) and reports tokens/s; TapML's e2e_bench runs a prefill of the same P
tokens and G decode steps after a warm-up. The two engines take turns, R rounds of one
measurement each, so that a slow spell of a shared machine falls on both; the table shows
the medians over the rounds and the median of the per-round ratios (> 1: TapML is faster),
with their spread (min-max) because single rounds on shared machines vary by +-30%.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

from bench_common import ROOT

MODELS = {
    "125m": ["--dim", "768", "--layers", "12", "--heads", "12", "--kv-heads", "4",
             "--hidden", "2048", "--vocab", "32000"],
    "1b": ["--dim", "2048", "--layers", "22", "--heads", "32", "--kv-heads", "4",
           "--hidden", "5632", "--vocab", "32000"],
}
PEER_TYPES = {"q8_0": "Q8_0", "q4_0": "Q4_0", "q4_k_m": "Q4_K_M", "q5_k_m": "Q5_K_M",
              "q6_k": "Q6_K", "q3_k_m": "Q3_K_M", "q2_k": "Q2_K"}


def run(cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit(f"quant_bench: {' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return r.stdout


def model_file(cache, build, peer, name, qtype):
    base = os.path.join(cache, f"random-{name}-f16-seed1.gguf")
    if not os.path.exists(base):
        print(f"making {base} ...", file=sys.stderr)
        run([os.path.join(build, "bench", "make_random_gguf"), "--out", base + ".tmp",
             "--dtype", "f16", "--seed", "1"] + MODELS[name])
        os.replace(base + ".tmp", base)
    out = os.path.join(cache, f"random-{name}-{qtype}-seed1.gguf")
    if not os.path.exists(out):
        print(f"quantizing {out} ...", file=sys.stderr)
        run([os.path.join(peer, "llama-quantize"), base, out + ".tmp", PEER_TYPES[qtype]])
        os.replace(out + ".tmp", out)
    return out


def peer_speed(peer, path, threads, p, n):
    def one(pp, tg):
        out = run([os.path.join(peer, "llama-bench"), "-m", path, "-t", str(threads), "-p", str(pp),
                   "-n", str(tg), "-r", "1", "-o", "json"])
        return json.loads(out)[0]["avg_ts"]
    return one(p, 0), one(0, n)


def tapml_speed(build, path, threads, p, n):
    out = run([os.path.join(build, "bench", "e2e_bench"), "--model", path, "--backend",
               f"cpu?threads={threads}", "-p", str(p), "-g", str(n), "-r", "1"])
    j = json.loads(out.strip().splitlines()[-1])
    return j["prefill_tok_s"], j["decode_tok_s"]


def spread(values):
    return f"{min(values):.2f}-{max(values):.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peer", default=os.path.join(os.environ.get("PEER", "/tmp/peer"), "build", "bin"),
                    help="folder with llama-bench and llama-quantize (default $PEER/build/bin)")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"), help="TapML build folder")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--models", default="125m")
    ap.add_argument("--types", default="q8_0,q4_k_m")
    ap.add_argument("-p", type=int, default=128)
    ap.add_argument("-n", type=int, default=32)
    ap.add_argument("-r", type=int, default=5, help="alternating rounds")
    a = ap.parse_args()
    cache = os.environ.get("TAPML_BENCH_CACHE", os.path.expanduser("~/.cache/tapml-bench"))
    os.makedirs(cache, exist_ok=True)
    for tool in ("llama-bench", "llama-quantize"):
        if not os.path.exists(os.path.join(a.peer, tool)):
            sys.exit(f"quant_bench: no {tool} in {a.peer} (build the peer with "
                     "../shared/peer/build.sh, or pass --peer)")
    print(f"threads {a.threads}, prefill P={a.p}, decode G={a.n}, {a.r} alternating rounds; "
          "medians, tokens/s; ratio = median of the rounds' ratios (min-max)")
    print(f"{'model':<16} {'llama.cpp pp':>12} {'tg':>8} {'tapml pp':>9} {'tg':>8} "
          f"{'ratio pp':>17} {'ratio tg':>17}")
    med = statistics.median
    for name in a.models.split(","):
        for qtype in a.types.split(","):
            path = model_file(cache, a.build, a.peer, name, qtype)
            rounds = []
            for r in range(a.r):
                print(f"  {name} {qtype}: round {r + 1}/{a.r}", end="\r", file=sys.stderr, flush=True)
                rounds.append(peer_speed(a.peer, path, a.threads, a.p, a.n) +
                              tapml_speed(a.build, path, a.threads, a.p, a.n))
            pp_peer, tg_peer, pp_t, tg_t = (med(col) for col in zip(*rounds))
            r_pp = [x[2] / x[0] for x in rounds]
            r_tg = [x[3] / x[1] for x in rounds]
            print(f"{name + ' ' + qtype:<16} {pp_peer:12.1f} {tg_peer:8.2f} {pp_t:9.1f} {tg_t:8.2f} "
                  f"{med(r_pp):5.2f} ({spread(r_pp):>10}) {med(r_tg):5.2f} ({spread(r_tg):>10})",
                  flush=True)


if __name__ == "__main__":
    main()
