#!/usr/bin/env bash
# End-to-end speed of TapML's cpu and ref backends against llama.cpp (node-llama-cpp) on the
# same GGUF files, the same thread count and the same token ids, in one run. See README.md.
#
# Usage: bench/run_e2e.sh            (from anywhere; knobs are environment variables below)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
THREADS="${THREADS:-$(nproc)}"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
SHARED="${TAPML_SHARED:-$ROOT/../shared}"
# Generated models are large (about 0.5 GB and 0.25 GB) and reproducible, so they live in a
# cache outside the repository and are made once.
CACHE="${TAPML_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tapml-bench}"
STORIES="$SHARED/models/stories260K/stories260K.gguf"

# stories260K (0.26M parameters) runs in microseconds per token, so it gets long runs and
# many repetitions; the ~125M-parameter runs are sized to keep the whole run well under 10
# minutes on 2 cores (about 3 there). ref (plain loops, f64 sums, one thread) gets fewer
# repetitions on them.
P_SMALL="${P_SMALL:-128}" G_SMALL="${G_SMALL:-128}" R_SMALL="${R_SMALL:-10}"
P_BIG="${P_BIG:-128}" G_BIG="${G_BIG:-32}" R_BIG="${R_BIG:-5}" R_REF_BIG="${R_REF_BIG:-2}"
REF_BIG="${REF_BIG:-1}"  # 0 skips ref on the large models
# The large model's shape: Llama-style with grouped-query attention and an untied classifier.
BIG_SHAPE=(--dim 768 --layers 12 --heads 12 --kv-heads 4 --hidden 2048 --vocab 32000 --context 2048 --seed 1)

die() { echo "run_e2e: $*" >&2; exit 1; }
[[ -f "$STORIES" ]] || die "$STORIES not found (set TAPML_SHARED to the shared data folder)"
command -v node >/dev/null || die "node (20 or later) is needed for the llama.cpp side"
[[ "$THREADS" =~ ^[1-9][0-9]*$ ]] || die "THREADS must be a positive integer, got '$THREADS'"

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then  # SKIP_BUILD=1 uses binaries already in $BUILD_DIR/bench
  echo "== building e2e_bench and make_random_gguf in $BUILD_DIR"
  [[ -f "$BUILD_DIR/CMakeCache.txt" ]] || cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
  make -C "$BUILD_DIR" -j"$(nproc)" e2e_bench make_random_gguf >/dev/null
fi
E2E="$BUILD_DIR/bench/e2e_bench"
GEN="$BUILD_DIR/bench/make_random_gguf"

NODE_DIR="$ROOT/bench/node"
if [[ ! -d "$NODE_DIR/node_modules/node-llama-cpp" ]]; then
  echo "== installing node-llama-cpp (prebuilt linux-x64 binaries; nothing is compiled)"
  # --omit=optional drops the other platforms' binaries; --ignore-scripts stops the
  # postinstall step, which would download and build llama.cpp if it found no binary.
  (cd "$NODE_DIR" && npm ci --omit=optional --ignore-scripts --no-audit --no-fund >/dev/null)
fi

mkdir -p "$CACHE"
gen_model() {  # dtype -> path; the name carries every generator setting (g1: the generator's
  # output format; bump it when make_random_gguf writes different bytes), so a cached file fits
  local dtype="$1" path="$CACHE/random-llama-g1-768x12-kv4-ff2048-v32000-s1-$1.gguf"
  if [[ ! -f "$path" ]]; then
    echo "== generating $path" >&2
    "$GEN" --out "$path" "${BIG_SHAPE[@]}" --dtype "$dtype" >&2
  fi
  echo "$path"
}
BIG_F32="$(gen_model f32)"
BIG_F16="$(gen_model f16)"

RESULTS="$(mktemp "${TMPDIR:-/tmp}/tapml-e2e.XXXXXX.jsonl")"
load1() { cut -d' ' -f1 /proc/loadavg; }
LOAD_BEFORE="$(load1)"
echo "== measuring with THREADS=$THREADS (load average before: $LOAD_BEFORE); raw results: $RESULTS"

# One model: TapML backends first, then llama.cpp, back to back so they see the same machine.
# Arguments: label path P G R ref_reps threads
bench_model() {
  local label="$1" path="$2" p="$3" g="$4" r="$5" ref_r="$6" t="$7"
  echo "-- $label (threads $t): TapML cpu" >&2
  "$E2E" --model "$path" --label "$label" --backend "cpu?threads=$t" -p "$p" -g "$g" -r "$r" \
    | sed "s/^{/{\"threads\":$t,/" >>"$RESULTS"
  if [[ "$ref_r" -gt 0 ]]; then
    echo "-- $label: TapML ref ($ref_r reps)" >&2
    # ref is single-threaded whatever THREADS says; it is listed to show the cost of the
    # reference's plain loops, not to race.
    "$E2E" --model "$path" --label "$label" --backend ref -p "$p" -g "$g" -r "$ref_r" \
      | sed "s/^{/{\"threads\":1,/" >>"$RESULTS"
  fi
  echo "-- $label (threads $t): llama.cpp" >&2
  (cd "$NODE_DIR" && node llama_bench.mjs --model "$path" --label "$label" --threads "$t" \
      -p "$p" -g "$g" -r "$r") | sed "s/^{/{\"threads\":$t,/" >>"$RESULTS"
}

bench_model stories260K "$STORIES" "$P_SMALL" "$G_SMALL" "$R_SMALL" "$R_SMALL" "$THREADS"
if [[ "$THREADS" -gt 1 ]]; then
  # At 0.26M parameters a token is a few hundred microseconds of work, so with several
  # threads the figure is mostly thread hand-off; one thread shows the engines' own speed.
  bench_model stories260K "$STORIES" "$P_SMALL" "$G_SMALL" "$R_SMALL" 0 1
fi
ref_big=0
[[ "$REF_BIG" == 1 ]] && ref_big="$R_REF_BIG"
bench_model random-125M-f32 "$BIG_F32" "$P_BIG" "$G_BIG" "$R_BIG" "$ref_big" "$THREADS"
bench_model random-125M-f16 "$BIG_F16" "$P_BIG" "$G_BIG" "$R_BIG" "$ref_big" "$THREADS"
LOAD_AFTER="$(load1)"

echo
echo "== $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs; load average before $LOAD_BEFORE, after $LOAD_AFTER"
# The table: medians over R repetitions; ratio = TapML / llama.cpp on the same model and
# thread count (above 1: TapML is faster); "greedy" counts how many of the first 16 greedy
# tokens agree with llama.cpp's (a check that both computed the same model).
node --input-type=module - "$RESULTS" "$THREADS" <<'EOF'
import { readFileSync } from "node:fs";
const [file, threads] = process.argv.slice(2);
const rows = readFileSync(file, "utf8").trim().split("\n").map((l) => JSON.parse(l));
const key = (r) => `${r.model}|${r.prompt_tokens}|${r.gen_tokens}`;
const llama = new Map();
for (const r of rows) if (r.engine === "llama.cpp") llama.set(`${key(r)}|${r.threads}`, r);
const fmt = (x) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
const out = [["model", "engine", "thr", "P", "G", "R", "prefill tok/s", "decode tok/s",
              "prefill ratio", "decode ratio", "greedy"]];
for (const r of rows) {
  const engine = r.engine === "tapml" ? `TapML ${r.backend.replace(/\?.*/, "")}` : "llama.cpp";
  // ref runs one thread; its ratio is against llama.cpp at the run's thread count.
  const base = llama.get(`${key(r)}|${r.threads}`) ?? llama.get(`${key(r)}|${threads}`);
  let pr = "", dr = "", agree = "";
  if (r.engine === "tapml" && base) {
    pr = (r.prefill_tok_s / base.prefill_tok_s).toFixed(2);
    dr = (r.decode_tok_s / base.decode_tok_s).toFixed(2);
    const n = Math.min(r.greedy.length, base.greedy.length);
    let k = 0;
    while (k < n && r.greedy[k] === base.greedy[k]) ++k;
    agree = `${k}/${n}`;
  }
  out.push([r.model, engine, String(r.threads), String(r.prompt_tokens), String(r.gen_tokens),
            String(r.reps), fmt(r.prefill_tok_s), fmt(r.decode_tok_s), pr, dr, agree]);
}
const width = out[0].map((_, c) => Math.max(...out.map((row) => row[c].length)));
for (const [i, row] of out.entries()) {
  console.log(row.map((cell, c) => (c < 2 ? cell.padEnd(width[c]) : cell.padStart(width[c]))).join("  "));
  if (i === 0) console.log(width.map((w) => "-".repeat(w)).join("  "));
}
EOF
if [[ "$REF_BIG" == 1 ]]; then
  echo "note: ref ran $R_REF_BIG repetitions (not $R_BIG) on the 125M models, single-threaded, to keep the run short."
else
  echo "note: ref was skipped on the 125M models (REF_BIG=0)."
fi
# Other work on the machine shows up as a load average above zero before the run starts.
awk -v a="$LOAD_BEFORE" 'BEGIN { if (a > 1.0) print "warning: other processes were using the CPU when the run began (load average " a "); figures are noisy." }'
