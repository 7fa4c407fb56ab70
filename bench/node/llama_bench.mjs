// llama.cpp's side of TapML's end-to-end benchmark, through node-llama-cpp's low-level
// sequence API (no chat wrapper, no tokenizer): the same measurement as bench/e2e_bench.cpp.
//
// One unmeasured warm-up generation, then R measured ones, each on a cleared sequence:
//   prefill: the P prompt tokens as one batch, logits and a greedy choice for the last one;
//   decode:  G single-token evaluations, each feeding the previous greedy choice.
// Prints one JSON line with per-run tokens/s and their medians.
//
// Usage: node llama_bench.mjs --model M.gguf --threads N [-p P] [-g G] [-r R] [--warmup W]
//                             [--label NAME]
import { getLlama, LlamaLogLevel } from "node-llama-cpp";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";

const { values: args } = parseArgs({
  options: {
    model: { type: "string" },
    threads: { type: "string" },
    "prompt-tokens": { type: "string", short: "p", default: "128" },
    "gen-tokens": { type: "string", short: "g", default: "32" },
    reps: { type: "string", short: "r", default: "5" },
    warmup: { type: "string", default: "1" },
    label: { type: "string" },
  },
});

function positiveInt(name, text, min = 1) {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) {
    console.error(`llama_bench: --${name} must be an integer >= ${min}, got '${text}'`);
    process.exit(2);
  }
  return n;
}

if (!args.model || !args.threads) {
  console.error("usage: node llama_bench.mjs --model M.gguf --threads N [-p P] [-g G] [-r R] [--warmup W]");
  process.exit(2);
}
const threads = positiveInt("threads", args.threads);
const P = positiveInt("prompt-tokens", args["prompt-tokens"]);
const G = positiveInt("gen-tokens", args["gen-tokens"]);
const R = positiveInt("reps", args.reps);
const W = positiveInt("warmup", args.warmup, 0);

// Kept identical to prompt_tokens() in e2e_bench.cpp: BOS, then a fixed spread of ids.
function promptTokens(n, vocab) {
  const ids = [1];
  for (let i = 1; i < n; ++i) ids.push(((i * 7919) % (vocab - 3)) + 3);
  return ids;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

// gpu: false picks the CPU-only prebuilt binary; build: "never" and skipDownload make a
// missing binary an error here instead of a silent compile or download.
const llama = await getLlama({
  gpu: false,
  build: "never",
  skipDownload: true,
  maxThreads: threads,
  logLevel: LlamaLogLevel.error,
});
const model = await llama.loadModel({ modelPath: args.model, gpuLayers: 0 });
// The vocabulary size is the embedding table's row count (GGUF ne = [dim, vocab]); files do
// not reliably carry llama.vocab_size, and a wrong size would silently feed NaN ids.
const embd = model.fileInfo.tensorInfo?.find((t) => t.name === "token_embd.weight");
const vocab = Number(embd?.dimensions?.[1] ?? model.fileInfo.metadata?.tokenizer?.ggml?.tokens?.length);
if (!Number.isInteger(vocab) || vocab <= 3) {
  console.error(`llama_bench: cannot tell the vocabulary size of ${args.model}`);
  process.exit(1);
}
// min: threads makes llama.cpp run with exactly this many threads, not "up to".
const context = await model.createContext({
  contextSize: P + G + 1,
  batchSize: P,
  sequences: 1,
  threads: { ideal: threads, min: threads },
});
const sequence = context.getSequence();
const prompt = promptTokens(P, vocab);
const greedy = { temperature: 0 };

async function generateOnce() {
  await sequence.clearHistory();
  const items = prompt.map((t, i) =>
    i === P - 1 ? [t, { generateNext: { token: true, options: greedy } }] : t);
  const t0 = performance.now();
  const out = await sequence.controlledEvaluate(items);
  const first = out[P - 1]?.next?.token;
  const t1 = performance.now();
  if (first == null) throw new Error("llama.cpp returned no token for the prompt's last position");
  const generated = [first];
  // Each step of this generator evaluates the token it last yielded, so G steps are G
  // single-token evaluations. yieldEogToken keeps an end-of-text choice from ending it early.
  for await (const token of sequence.evaluate([first], { ...greedy, yieldEogToken: true })) {
    generated.push(token);
    if (generated.length > G) break;
  }
  const t2 = performance.now();
  return { prefillS: (t1 - t0) / 1000, decodeS: (t2 - t1) / 1000, generated };
}

for (let i = 0; i < W; ++i) await generateOnce();
const prefill = [], decode = [];
let last;
for (let i = 0; i < R; ++i) {
  last = await generateOnce();
  prefill.push(P / last.prefillS);
  decode.push(G / last.decodeS);
}

console.log(JSON.stringify({
  engine: "llama.cpp",
  backend: `node-llama-cpp cpu threads=${context.currentThreads}`,
  model: args.label ?? args.model,
  prompt_tokens: P,
  gen_tokens: G,
  reps: R,
  prefill_tok_s: median(prefill),
  decode_tok_s: median(decode),
  prefill_runs: prefill,
  decode_runs: decode,
  flash_attention: context.flashAttention,
  greedy: last.generated.slice(0, 16),
}));

await context.dispose();
await model.dispose();
await llama.dispose();
