#!/usr/bin/env python3
"""TapML against llama.cpp's own llama-bench (built natively, never through a binding), same
GGUF file, same thread count, in one run; prefill and decode tokens/s (medians) and the ratio.

    bench/peer_bench.py [--peer DIR] [--backend cpu|opencl|URI] [--threads N]
                        [--models 125m,1b] [--types f32,f16,q8_0,q4_k_m] [--file PATH ...]
                        [-p 128] [-n 32] [--depth P] [-r 5] [--inner 1]
                        [--stat median,best] [--peer-args '--no-host 1']

The models are made by bench's make_random_gguf (seed 1: "125m" is dim 768, 12 layers, 12
heads, 4 KV heads, FFN 2048, vocab 32000; "1b" is dim 2048, 22 layers, 32 heads, 4 KV heads,
FFN 5632, vocab 32000) as f32 or f16, and quantized types from the f16 file by the peer's
llama-quantize, so both engines read the very same blocks; --file adds a GGUF of your own
(e.g. stories260K.gguf). Files go to ${TAPML_BENCH_CACHE:-~/.cache/tapml-bench}.

--backend cpu (default) compares TapML's cpu backend with llama-bench on the CPU (-ngl 0,
and -nopo 1 so a GPU build offloads nothing); any other backend URI (opencl, vulkan, ...)
is compared with llama-bench on its GPU (-ngl 99 -fa 1, the peer built with its GPU backend).
The first lines name the CPU, the GPU (nvidia-smi) and the load average; the last two what
each engine said it ran on (llama-bench's backends and GPU, the device of each TapML backend
URI), so that an OpenCL loader handing "opencl" a CPU driver, or a peer built without its GPU
backend, is seen rather than read as a ratio.

llama-bench runs `-p P -n 0` (prefill: one batch of P tokens) and `-p 0 -n G -d P` (decode: G
single-token steps after P tokens already in the cache, filled untimed) and reports tokens/s;
TapML's e2e_bench runs a prefill of the same P tokens and then G decode steps, after a
warm-up, so both engines decode at the same positions P .. P+G-1 and attend over the same
prefix. (Without -d, llama-bench decodes from an empty cache, less attention work per token:
the 125M f16 model at 2 threads on a 2-core VM decoded 136-173 tok/s at depth 0 and 134-144
at depth 128, three alternating rounds.) --depth D decodes llama.cpp at depth D instead (0:
llama-bench's default), for a comparison with figures taken that way. The two engines take
turns, R rounds of one measurement each, so that a slow spell of a shared machine falls on
both; the table shows the medians over the rounds and the median of the per-round ratios
(> 1: TapML is faster), with their spread (min-max) because single rounds on shared machines
vary by +-30%. With
--inner N each round measures N times and takes llama-bench's mean and e2e_bench's median:
a 125M prefill at 16 threads lasts ~30 ms, and one such sample says little. --stat best takes
each engine's fastest measurement of a round instead (llama-bench's samples, e2e_bench's
runs): on a machine whose neighbours slow single runs by 2x at random, the fastest run is the
least disturbed one, for both engines alike. --stat median,best prints both tables from the
same rounds. --peer-args passes more options to every llama-bench call (how a build's
placement of weights or cache changes its speed: '--no-host 1', '-mmp 0', '-nkvo 1').
"""
import argparse
import json
import os
import shlex
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
        sys.exit(f"peer_bench: {' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return r.stdout


def model_file(cache, build, peer, name, qtype):
    def made(dtype):
        path = os.path.join(cache, f"random-{name}-{dtype}-seed1.gguf")
        if not os.path.exists(path):
            print(f"making {path} ...", file=sys.stderr)
            run([os.path.join(build, "bench", "make_random_gguf"), "--out", path + ".tmp",
                 "--dtype", dtype, "--seed", "1"] + MODELS[name])
            os.replace(path + ".tmp", path)
        return path
    if qtype in ("f32", "f16"):
        return made(qtype)
    base = made("f16")
    out = os.path.join(cache, f"random-{name}-{qtype}-seed1.gguf")
    if not os.path.exists(out):
        print(f"quantizing {out} ...", file=sys.stderr)
        run([os.path.join(peer, "llama-quantize"), base, out + ".tmp", PEER_TYPES[qtype]])
        os.replace(out + ".tmp", out)
    return out


# What each engine said it ran on, printed once per run: a misconfigured driver (an OpenCL
# loader that found only a CPU driver, a llama.cpp built without its GPU backend) shows here
# rather than as a baffling ratio.
DEVICES = {}


def peer_samples(peer, path, backend, threads, p, n, depth, inner=1, extra=()):
    """llama-bench's tokens/s, every measurement: (prefill samples, decode samples)."""
    where = ["-ngl", "0", "-nopo", "1"] if backend == "cpu" else ["-ngl", "99", "-fa", "1"]
    where += list(extra)
    def one(pp, tg, d):
        out = run([os.path.join(peer, "llama-bench"), "-m", path, "-t", str(threads), "-p", str(pp),
                   "-n", str(tg), "-d", str(d), "-r", str(inner), "-o", "json"] + where)
        j = json.loads(out)[0]
        DEVICES.setdefault("llama.cpp", f"backends {j.get('backends', '?')}, "
                                        f"GPU {j.get('gpu_info') or 'none'}, {j.get('cpu_info', '?')}")
        return j["samples_ts"]
    return one(p, 0, 0), one(0, n, depth)


def tapml_samples(build, path, backend, threads, p, n, inner=1):
    """e2e_bench's tokens/s, every run: (prefill runs, decode runs)."""
    uri = f"cpu?threads={threads}" if backend == "cpu" else backend
    out = run([os.path.join(build, "bench", "e2e_bench"), "--model", path, "--backend", uri,
               "-p", str(p), "-g", str(n), "-r", str(inner)])
    j = json.loads(out.strip().splitlines()[-1])
    DEVICES.setdefault("tapml", "; ".join(f"{u}: {d}" for u, d in j.get("devices", {}).items())
                       or "not reported (an e2e_bench older than its 'devices' field)")
    return j["prefill_runs"], j["decode_runs"]


# How one round's measurements of an engine become one figure: "median" is what each tool
# reports itself (llama-bench the mean of its samples, e2e_bench the median of its runs),
# "best" the fastest measurement of each.
STATS = {
    "median": (statistics.mean, statistics.median),
    "best": (max, max),
}


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = ""
    try:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.strip()
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"CPU {cpu} ({os.cpu_count()} threads){', GPU ' + gpu if gpu else ''}; load average {load}"


def spread(values):
    return f"{min(values):.2f}-{max(values):.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peer", default=os.path.join(os.environ.get("PEER", "/tmp/peer"), "build", "bin"),
                    help="folder with llama-bench and llama-quantize (default $PEER/build/bin)")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"), help="TapML build folder")
    ap.add_argument("--backend", default="cpu", help="cpu, or a GPU backend URI (opencl, vulkan, ...)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--models", default="125m", help="random models: 125m, 1b (comma-separated; '' for none)")
    ap.add_argument("--types", default="f16", help="f32, f16, q8_0, q4_0, q4_k_m, q5_k_m, q6_k, q3_k_m, q2_k")
    ap.add_argument("--file", action="append", default=[], help="a GGUF file of your own (repeatable)")
    ap.add_argument("-p", type=int, default=128)
    ap.add_argument("-n", type=int, default=32)
    ap.add_argument("--depth", type=int, default=None,
                    help="tokens in llama.cpp's cache before its decode (default P, as TapML's)")
    ap.add_argument("-r", type=int, default=5, help="alternating rounds")
    ap.add_argument("--inner", type=int, default=1, help="measurements per engine per round")
    ap.add_argument("--stat", default="median",
                    help="per round and engine, of the --inner measurements: median "
                         "(llama-bench: mean), best (the fastest), or both: median,best")
    ap.add_argument("--peer-args", default="",
                    help="more llama-bench options, one string (e.g. '--no-host 1' or '-mmp 0')")
    a = ap.parse_args()
    cache = os.environ.get("TAPML_BENCH_CACHE", os.path.expanduser("~/.cache/tapml-bench"))
    os.makedirs(cache, exist_ok=True)
    if a.r < 1 or a.inner < 1 or a.p < 1 or a.n < 1:
        sys.exit("peer_bench: -r, --inner, -p and -n must be at least 1")
    stats = [x for x in a.stat.split(",") if x]
    if not stats or any(x not in STATS for x in stats):
        sys.exit(f"peer_bench: --stat {a.stat!r}: give median, best or median,best")
    try:
        peer_args = shlex.split(a.peer_args)
    except ValueError as e:
        sys.exit(f"peer_bench: --peer-args: {e}")
    depth = a.p if a.depth is None else a.depth
    if depth < 0:
        sys.exit("peer_bench: --depth must be 0 or more")
    models = [m for m in a.models.split(",") if m]
    types = [t for t in a.types.split(",") if t]
    for m in models:
        if m not in MODELS:
            sys.exit(f"peer_bench: unknown model '{m}' (125m, 1b)")
    for t in types:
        if t not in PEER_TYPES and t not in ("f32", "f16"):
            sys.exit(f"peer_bench: unknown type '{t}' (f32, f16, {', '.join(PEER_TYPES)})")
    for f in a.file:
        if not os.path.isfile(f):
            sys.exit(f"peer_bench: {f}: no such file")
    tools = ["llama-bench"] + (["llama-quantize"] if models and set(types) - {"f32", "f16"} else [])
    for tool in tools:
        if not os.path.exists(os.path.join(a.peer, tool)):
            sys.exit(f"peer_bench: no {tool} in {a.peer} (build the peer with "
                     "../shared/peer/build.sh, or pass --peer)")
    jobs = [(f"{m} {t}", lambda m=m, t=t: model_file(cache, a.build, a.peer, m, t))
            for m in models for t in types]
    jobs += [(os.path.basename(f), lambda f=f: f) for f in a.file]
    print(machine())
    if peer_args:
        print(f"llama-bench also given: {shlex.join(peer_args)}")
    print(f"backend {a.backend}, threads {a.threads}, prefill P={a.p}, decode G={a.n} "
          f"(llama.cpp at depth {depth}), {a.r} alternating rounds of {a.inner} measurement(s); "
          f"per round and engine the {' or the '.join(stats)} of them (median: llama-bench's "
          "mean, e2e_bench's median; best: the fastest); medians over the rounds, tokens/s; "
          "ratio = median of the rounds' ratios (min-max)")
    print(f"{'model':<24} {'llama.cpp pp':>12} {'tg':>8} {'tapml pp':>9} {'tg':>8} "
          f"{'ratio pp':>17} {'ratio tg':>17}")
    med = statistics.median
    for label, make in jobs:
        path = make()
        rounds = []
        for r in range(a.r):
            print(f"  {label}: round {r + 1}/{a.r}", end="\r", file=sys.stderr, flush=True)
            rounds.append(peer_samples(a.peer, path, a.backend, a.threads, a.p, a.n, depth, a.inner,
                                       peer_args) +
                          tapml_samples(a.build, path, a.backend, a.threads, a.p, a.n, a.inner))
        for stat in stats:
            of_peer, of_tapml = STATS[stat]
            figures = [(of_peer(x[0]), of_peer(x[1]), of_tapml(x[2]), of_tapml(x[3])) for x in rounds]
            pp_peer, tg_peer, pp_t, tg_t = (med(col) for col in zip(*figures))
            r_pp = [x[2] / x[0] for x in figures]
            r_tg = [x[3] / x[1] for x in figures]
            row = label if len(stats) == 1 else f"{label} [{stat}]"
            print(f"{row:<24} {pp_peer:12.1f} {tg_peer:8.2f} {pp_t:9.1f} {tg_t:8.2f} "
                  f"{med(r_pp):5.2f} ({spread(r_pp):>10}) {med(r_tg):5.2f} ({spread(r_tg):>10})",
                  flush=True)
    for engine in ("llama.cpp", "tapml"):
        if engine in DEVICES:
            print(f"{engine} ran on: {DEVICES[engine]}")


if __name__ == "__main__":
    main()
