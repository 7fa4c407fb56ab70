#!/usr/bin/env python3
"""Carve overhead and fault detection on stories260K.

1. Carve overhead: the median wall time of `tapml carve` over the three golden prompts
   against a plain `tapml run --backend ref` of the same prompts and steps (the source
   run that carving observes), and their ratio.
2. Detection: for every fault of the faulty backend, replay the corpus on
   faulty:cpu?fault=NAME with realistic (carved) inputs and with --synthetic inputs, and
   count the failing tests; also the replay wall time.

Usage: bench/carve_bench.py [--tapml build/tapml] [--reps 3] [--steps 256]
"""
import argparse
import json
import os
import statistics
import sys
import tempfile

from bench_common import DEFAULT_TAPML, shared_dir, timed

FAULTS = ["softmax_f16", "rope_pairing", "gqa_map", "kv_offset", "matmul_tail",
          "rmsnorm_eps", "silu_approx", "exp_overflow"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tapml", default=DEFAULT_TAPML)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--keep", type=int, default=3)
    a = ap.parse_args()
    shared = shared_dir()
    model = os.path.join(shared, "models/stories260K/stories260K.bin")
    tok = os.path.join(shared, "models/stories260K/tok512.bin")
    prompts = []
    for i in range(3):
        with open(os.path.join(shared, f"golden/stories260K/greedy_{i}.json")) as f:
            prompts.append(json.load(f)["prompt"])
    work = tempfile.mkdtemp(prefix="tapml_carve_bench_")
    corpus = os.path.join(work, "stories.corpus")

    run_times, carve_times = [], []
    for rep in range(a.reps):
        total = 0.0
        for p in prompts:
            dt, r = timed([a.tapml, "run", "--model", model, "--tokenizer", tok, "--prompt", p,
                           "--steps", str(a.steps), "--backend", "ref", "--json"])
            if r.returncode:
                sys.exit("run failed: " + r.stderr)
            total += dt
        run_times.append(total)
        args = [a.tapml, "carve", "--model", model, "--tokenizer", tok, "--steps", str(a.steps),
                "--keep", str(a.keep), "--out", corpus, "--overwrite", "--json"]
        for p in prompts:
            args += ["--prompt", p]
        dt, r = timed(args)
        if r.returncode:
            sys.exit("carve failed: " + r.stderr)
        carve_times.append(dt)
        summary = json.loads(r.stdout)

    run_med, carve_med = statistics.median(run_times), statistics.median(carve_times)
    print(f"stories260K, 3 golden prompts x {a.steps} positions, keep {a.keep}, {a.reps} reps")
    print(f"  calls seen {summary['calls_seen']}, signatures {summary['signatures']}, "
          f"tests kept {summary['tests_kept']}, tensor bytes {summary['blob_bytes']}, "
          f"file {summary['file_bytes']} bytes")
    print(f"  plain run (ref) median {run_med:.2f} s, carve median {carve_med:.2f} s, "
          f"overhead x{carve_med / run_med:.1f}")

    print()
    print(f"{'fault':14} {'realistic: failed (checks)':>34} {'synthetic: failed (checks)':>34} "
          f"{'of tests':>9} {'realistic s':>12} {'synthetic s':>12}")
    for fault in FAULTS:
        row = [fault]
        secs = []
        total = 0
        for synthetic in (False, True):
            report = os.path.join(work, f"{fault}_{synthetic}.json")
            args = [a.tapml, "test", "--corpus", corpus, "--backend",
                    f"faulty:cpu?fault={fault}", "--json", report]
            if synthetic:
                args.append("--synthetic")
            dt, r = timed(args)
            with open(report) as f:
                rep = json.load(f)
            checks = {}
            for t in rep["tests"]:
                if not t["pass"]:
                    checks[t["check"]] = checks.get(t["check"], 0) + 1
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(checks.items(), key=lambda kv: -kv[1]))
            row.append(f"{rep['summary']['failed']} ({kinds})" if kinds else "0")
            total = rep["summary"]["tests"]
            secs.append(dt)
        print(f"{row[0]:14} {row[1]:>34} {row[2]:>34} {total:>9} {secs[0]:>12.2f} {secs[1]:>12.2f}")


if __name__ == "__main__":
    main()
