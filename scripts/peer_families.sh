#!/usr/bin/env bash
# The peer check: every shared Hugging Face family folder converted by `tapml convert`, run by
# llama.cpp (llama_logits, one position at a time) on the golden token ids, and compared with
# transformers' float64 logits (logits.f32). Prints per family max|diff| / max|logit| (PASS
# below 1e-3) and how many of the generated positions llama.cpp's argmax equals the golden's
# next id. A family whose conversion notes say llama.cpp runs it differently (a sliding window,
# a query scale or a GELU llama.cpp has no key for) is expected to fail, and the note says why.
#
#   PEER=/path/to/peer scripts/peer_families.sh [FAMILY...]
#
# PEER is the folder that ../shared/peer/build.sh built (it holds llama_logits). TAPML_SHARED
# (default ../shared) holds the families; TAPML (default build/tapml) is the binary.
# Exit status: 0 when every failure is an expected one, 1 otherwise, 2 for a bad setup.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${PEER:-}" ]]; then
  echo "peer_families.sh: set PEER to the llama.cpp peer folder built by shared/peer/build.sh" \
       "(the one holding llama_logits), e.g. PEER=/work/peer $0" >&2
  exit 2
fi
LOGITS="$PEER/llama_logits"
if [[ ! -x "$LOGITS" ]]; then
  echo "peer_families.sh: $LOGITS is missing: build it with shared/peer/build.sh (PEER=$PEER)" >&2
  exit 2
fi
SHARED=${TAPML_SHARED:-$(cd .. && pwd)/shared}
TAPML=${TAPML:-build/tapml}
if [[ ! -x "$TAPML" ]]; then
  echo "peer_families.sh: $TAPML is missing: build tapml first (scripts/build)" >&2
  exit 2
fi
FAMILIES_DIR="$SHARED/models/families"
if [[ $# -gt 0 ]]; then
  families=("$@")
else
  families=()
  for d in "$FAMILIES_DIR"/*/; do
    [[ -f "$d/golden.json" ]] && families+=("$(basename "$d")")
  done
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/peer_families.XXXXXX")
trap 'rm -rf "$work"' EXIT

printf '%-11s %-11s %-10s %-6s %-8s %s\n' family gguf-arch err/max verdict argmax "llama.cpp runs it differently"
unexpected=0
for fam in "${families[@]}"; do
  dir="$FAMILIES_DIR/$fam"
  gguf="$work/$fam.gguf"
  if ! "$TAPML" convert --model "$dir" --out "$gguf" -q >"$work/$fam.convert.out" 2>"$work/$fam.notes"; then
    printf '%-11s %-11s %-10s %-6s %-8s %s\n' "$fam" - - FAIL - "tapml convert failed: $(tail -1 "$work/$fam.notes")"
    unexpected=1
    continue
  fi
  arch=$(awk '{print $2}' "$work/$fam.convert.out")
  notes=$(sed -n 's/^note: //p' "$work/$fam.notes" | paste -sd ';' -)
  mapfile -t ids < <(jq -r '.token_ids[]' "$dir/golden.json")
  if ! "$LOGITS" "$gguf" "$work/$fam.f32" "${ids[@]}" >"$work/$fam.peer.log" 2>&1; then
    why=$(grep -E 'error|failed|wrong' "$work/$fam.peer.log" | head -1 | sed 's/^.*: //')
    printf '%-11s %-11s %-10s %-6s %-8s %s\n' "$fam" "$arch" - "FAIL" - "llama.cpp cannot load it: ${why:-see its log}${notes:+; $notes}"
    [[ -z "$notes" ]] && unexpected=1
    continue
  fi
  read -r ratio agree total < <(python3 - "$work/$fam.f32" "$dir/logits.f32" "$dir/golden.json" <<'EOF'
import json, struct, sys
peer, gold, golden = sys.argv[1:4]
g = json.load(open(golden))
ids, prompt = g["token_ids"], g["prompt_ids"]
n = len(ids)
def rows(path):
    data = open(path, "rb").read()
    vals = struct.unpack(f"<{len(data) // 4}f", data)
    v = len(vals) // n
    return [vals[i * v:(i + 1) * v] for i in range(n)]
a, b = rows(peer), rows(gold)
largest = max(abs(x) for r in b for x in r)
worst = max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))
# Position p predicts id p + 1; the generated ids follow the prompt.
positions = range(len(prompt) - 1, n - 1)
agree = sum(1 for p in positions if max(range(len(a[p])), key=a[p].__getitem__) == ids[p + 1])
print(f"{worst / largest:.2e}", agree, len(positions))
EOF
)
  verdict=PASS
  if ! python3 -c "import sys; sys.exit(0 if float('$ratio') < 1e-3 else 1)"; then
    verdict=FAIL
    [[ -z "$notes" ]] && unexpected=1
  fi
  printf '%-11s %-11s %-10s %-6s %-8s %s\n' "$fam" "$arch" "$ratio" "$verdict" "$agree/$total" "${notes:--}"
done
exit $unexpected
