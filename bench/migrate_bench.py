#!/usr/bin/env python3
"""Wall time to a verdict, per fault, on stories260K.

For every fault of the faulty backend: the median wall time of
  - top-down: `tapml migrate --strategy auto --backend faulty:cpu?fault=NAME` (a verdict naming
    the culprit), for the fault everywhere and for the fault at one site;
  - bottom-up baseline: `tapml test --synthetic` of a carved corpus on the same target (random
    inputs with the corpus's signatures; its verdict is the list of failing tests);
and whether each verdict named the right op / site.

Usage: bench/migrate_bench.py [--tapml build/tapml] [--reps 3] [--steps 64]
"""
import argparse
import json
import os
import statistics
import sys
import tempfile

from bench_common import DEFAULT_TAPML, shared_dir, timed

FAULTS = [("softmax_f16", "attention", "blk.3.attn"), ("rope_pairing", "rope", "blk.2.rope_k"),
          ("gqa_map", "attention", "blk.4.attn"), ("kv_offset", "kv_store", "blk.1.kv_store"),
          ("matmul_tail", "matmul", "blk.2.ffn_down"), ("rmsnorm_eps", "rmsnorm", "blk.3.ffn_norm"),
          ("silu_approx", "swiglu", "blk.1.ffn_act"), ("exp_overflow", "attention", "blk.0.attn")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tapml", default=DEFAULT_TAPML)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--steps", type=int, default=64)
    a = ap.parse_args()
    shared = shared_dir()
    model = os.path.join(shared, "models/stories260K/stories260K.gguf")
    work = tempfile.mkdtemp(prefix="tapml_migrate_bench_")
    corpus = os.path.join(work, "stories.corpus")
    dt, r = timed([a.tapml, "carve", "--model", model, "--prompt", "Once upon a time",
                   "--steps", str(a.steps), "--out", corpus, "--json"])
    if r.returncode:
        sys.exit("carve failed: " + r.stderr)
    print(f"stories260K, prompt 'Once upon a time', {a.steps} positions, medians of {a.reps}; "
          f"carve for the baseline took {dt:.2f} s")
    print(f"{'fault':14} {'migrate (everywhere)':>24} {'migrate (one site)':>26} {'synthetic replay':>22}")
    for fault, op, site in FAULTS:
        cells = []
        for where in ("", site):
            uri = f"faulty:cpu?fault={fault}"
            if where:
                uri += "&site=^" + where.replace(".", "\\.") + "$"
            times, named = [], False
            for _ in range(a.reps):
                report = os.path.join(work, "m.json")
                dt, r = timed([a.tapml, "migrate", "--model", model, "--backend", uri, "--steps",
                               str(a.steps), "--prompt", "Once upon a time", "--quiet", "--json", report])
                times.append(dt)
                with open(report) as f:
                    v = json.load(f)["verdict"]
                named = (v["status"] == "fail" and
                         (any(c["site"] == where for c in v["culprits"]) if where else op in v["culprit_ops"]))
            runs = json.load(open(report))["runs"]
            cells.append(f"{statistics.median(times):.2f} s, {runs} runs, {'ok' if named else 'MISSED'}")
        times, failed = [], 0
        for _ in range(a.reps):
            report = os.path.join(work, "t.json")
            dt, r = timed([a.tapml, "test", "--corpus", corpus, "--backend", f"faulty:cpu?fault={fault}",
                           "--synthetic", "--json", report])
            times.append(dt)
            failed = json.load(open(report))["summary"]["failed"]
        cells.append(f"{statistics.median(times):.2f} s, {failed} failing")
        print(f"{fault:14} {cells[0]:>24} {cells[1]:>26} {cells[2]:>22}")


if __name__ == "__main__":
    main()
