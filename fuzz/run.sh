#!/usr/bin/env bash
# Builds the libFuzzer targets with clang into build-fuzz/ and runs each for SECONDS
# (default 30) with inputs up to 64 KiB. Exits non-zero if any target crashes; the input
# that crashed it is kept as build-fuzz/artifacts/TARGET-crash-*. Found inputs accumulate
# in build-fuzz/corpus/TARGET between runs; seeds are made afresh in a temporary folder.
#   fuzz/run.sh [SECONDS]       (CXX=clang++-15 fuzz/run.sh to pick the compiler)
set -euo pipefail

seconds=${1:-30}
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build-fuzz
shared=${TAPML_SHARED:-$root/../shared}

cxx=${CXX:-}
if [[ -z $cxx || $cxx != *clang* ]]; then
  cxx=$(command -v clang++ || command -v clang++-14 || true)
fi
[[ -n $cxx ]] || { echo "fuzz/run.sh: clang++ not found (libFuzzer needs clang)" >&2; exit 2; }

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
if [[ ! -f $build/CMakeCache.txt ]]; then
  cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_CXX_COMPILER="$cxx" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTAPML_BUILD_FUZZ=ON -DTAPML_BUILD_TESTS=OFF \
    -DTAPML_BUILD_BENCH=OFF >/dev/null
fi
targets=(fuzz_gguf fuzz_llama2c fuzz_safetensors fuzz_rpc fuzz_tokenizer)
cmake --build "$build" --target "${targets[@]}" fuzz_seeds

seeds=$(mktemp -d)
trap 'rm -rf "$seeds"' EXIT
mkdir -p "$seeds/fuzz_gguf" "$seeds/fuzz_llama2c" "$seeds/fuzz_safetensors" "$seeds/fuzz_rpc" \
  "$seeds/fuzz_tokenizer"
"$build/fuzz/fuzz_seeds" "$seeds/fuzz_gguf" "$seeds/fuzz_llama2c" "$seeds/fuzz_safetensors" \
  "$seeds/fuzz_tokenizer"
# Protocol seeds: a HELLO frame and a RUN payload (matmul on two tensors), hand-encoded.
printf '\x12\x00\x00\x00\x01TPML\x02\x00\x00\x00\x01\x00\x00\x00x\x00\x00\x00\x00' >"$seeds/fuzz_rpc/hello"
printf '\x09\x03\x00\x00\x00add\x00\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00' >"$seeds/fuzz_rpc/run"
# Beginnings of the real files: their headers, metadata and tensor directories.
if [[ -d $shared/models ]]; then
  for f in "$shared"/models/*/*.gguf "$shared"/vocab/*.gguf; do
    head -c 65536 "$f" >"$seeds/fuzz_gguf/$(basename "$f")"
  done
  head -c 16384 "$shared/models/stories260K/stories260K.gguf" >"$seeds/fuzz_gguf/stories_16k.gguf"
  head -c 4096 "$shared/models/stories260K/stories260K.bin" >"$seeds/fuzz_llama2c/stories_4k.bin"
  # The Hugging Face families' headers, with the data cut to the seed size.
  for d in "$shared"/models/families/*/; do
    if [[ -f $d/model.safetensors ]]; then
      head -c 16384 "$d/model.safetensors" >"$seeds/fuzz_safetensors/$(basename "$d").safetensors"
    fi
  done
else
  echo "fuzz/run.sh: $shared/models not found; seeding with generated files only" >&2
fi

status=0
for t in "${targets[@]}"; do
  mkdir -p "$build/corpus/$t" "$build/artifacts"
  echo "== $t: ${seconds}s"
  dict=()
  [[ -f $root/fuzz/$t.dict ]] && dict=(-dict="$root/fuzz/$t.dict")
  if ! "$build/fuzz/$t" "$build/corpus/$t" "$seeds/$t" "${dict[@]}" -max_total_time="$seconds" \
      -max_len=65536 -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
      -artifact_prefix="$build/artifacts/$t-" 2>"$build/$t.log"; then
    echo "FAIL: $t crashed; see $build/$t.log and $build/artifacts/" >&2
    tail -n 40 "$build/$t.log" >&2
    status=1
  else
    grep -E "^stat::(number_of_executed_units|peak_rss_mb)|cov:" "$build/$t.log" | tail -n 3
  fi
done
exit $status
