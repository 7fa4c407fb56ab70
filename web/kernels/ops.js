// The WebGPU kernels of the TapML op catalog, in WGSL: f32 storage and f32 math; weights of
// f16 read as WGSL f16 when the device has shader-f16, else unpacked from u32 words; bf16
// always from u32 words. Each kernel is {supports(call, caps) -> reason | null,
// encode(ctx, call)}; ctx.entry(tensor, writable, esize) places a tensor (kernels/runner.js)
// and ctx.runner records dispatches. Ops whose meaning is in src/ops/<name>.cpp.

import { headerFields, GROUP_INDEX, HALF_FNS, MATH_FNS, weightReader } from './runner.js';
import { numel } from '../protocol.js';

const WG = 64;
// Kernel choices that tests may force: for attention and the row reductions, 'auto',
// 'invocation' (per row) or 'workgroup' (per row); the most bytes of moe_ffn's scratch
// activations per chunk of tokens.
export const KERNEL_CHOICE = { attention: 'auto', rows: 'auto', moeActBytes: 64 * 1024 * 1024 };
const ceilDiv = (a, b) => Math.ceil(a / b);
const f32 = (v) => ['f', v];
const u32 = (v) => ['u', v];

const entry = (wg) => /* wgsl */ `@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let g = ${GROUP_INDEX};
  if (g >= P.groups) { return; }`;
const ENTRY = entry(WG);

function uniformDecl(nBindings, fields) {
  return `struct Params {\n${headerFields(nBindings)}${fields.map((f) => `  ${f},\n`).join('')}}\n` +
    `@group(0) @binding(${nBindings}) var<uniform> P: Params;\n`;
}
// The status buffer of the device (device.js): the first failing invocation of any kernel
// records [code, value, limit, extra]; READ and SYNC report it. Codes: 1 a token id outside
// the vocabulary, 2 cache rows past its end.
const statusDecl = (b) => `@group(0) @binding(${b}) var<storage, read_write> ST: array<atomic<u32>>;
fn report(code: u32, value: u32, limit: u32, extra: u32) {
  if (atomicCompareExchangeWeak(&ST[0], 0u, code).exchanged) {
    atomicStore(&ST[1], value);
    atomicStore(&ST[2], limit);
    atomicStore(&ST[3], extra);
  }
}`;
const ro = (b, name, type = 'f32') => `@group(0) @binding(${b}) var<storage, read> ${name}: array<${type}>;`;
const rw = (b, name, type = 'f32') => `@group(0) @binding(${b}) var<storage, read_write> ${name}: array<${type}>;`;

// ---- elementwise: out[i] = f(a[i], b[...]) -------------------------------------------------

const ELEMENTWISE = {
  add: { n: 2, expr: 'A[P.o0 + i] + B[P.o1 + i]' },
  mul: { n: 2, expr: 'A[P.o0 + i] * B[P.o1 + i]' },
  swiglu: { n: 2, expr: '(A[P.o0 + i] / (1.0 + exp(-A[P.o0 + i]))) * B[P.o1 + i]' },
  bias: { n: 2, expr: 'A[P.o0 + i] + B[P.o1 + i % P.cols]' },
  sigmoid_gate: { n: 2, expr: 'A[P.o0 + i] * sigmoid_acc(B[P.o1 + i / P.cols])' },
  scale: { n: 1, expr: 'A[P.o0 + i] * P.f', attr: 's' },
  softcap: { n: 1, expr: 'P.f * tanh_acc(A[P.o0 + i] / P.f)', attr: 'cap' },
  // 0.5 x (1 + erf(x / sqrt 2)) as 0.5 x erfc(-x / sqrt 2); 0.5 x (1 + tanh z) as
  // x / (1 + exp(-2z)): no cancellation for negative x.
  gelu0: { n: 1, expr: '0.5 * A[P.o0 + i] * erfc_acc(-A[P.o0 + i] * 0.70710678118654752)' },
  gelu1: { n: 1, expr: 'A[P.o0 + i] / (1.0 + exp(-2.0 * (0.7978845608028654 * (A[P.o0 + i] + ' +
    '0.044715 * A[P.o0 + i] * A[P.o0 + i] * A[P.o0 + i]))))' },
};

function elementwiseShader(kind) {
  const e = ELEMENTWISE[kind];
  const out = e.n; // binding index of the output
  return `${MATH_FNS}
${ro(0, 'A')}
${e.n === 2 ? ro(1, 'B') : ''}
${rw(out, 'O')}
${uniformDecl(out + 1, ['n: u32', 'cols: u32', 'f: f32'])}
${ENTRY}
  let i = g * ${WG}u + lid;
  if (i >= P.n) { return; }
  O[P.o${out} + i] = ${e.expr};
}`;
}

function elementwiseKernel(op) {
  return {
    encode(ctx, c) {
      const kind = op === 'gelu' ? `gelu${c.attrs.get('approx')}` : op;
      const e = ELEMENTWISE[kind];
      const n = numel(c.outputs[0].shape);
      const entries = c.inputs.slice(0, e.n).map((t) => ctx.entry(t, false, 4));
      entries.push(ctx.entry(c.outputs[0], true, 4));
      const cols = c.inputs[0].shape[1];
      const f = e.attr ? c.attrs.get(e.attr) : 0;
      ctx.runner.dispatch(elementwiseShader(kind), entries, [u32(n), u32(cols), f32(f)], ceilDiv(n, WG));
    },
  };
}

// ---- row reductions: rmsnorm, layernorm ----------------------------------------------------
// GPUs: one workgroup of ROW_WG per row, whose reductions take two barriers each (every
// invocation sums the partials itself). CPU implementations: one invocation per row.

const ROW_WG = 64;

function rowKernel(perInvocation) {
  if (perInvocation)
    return { wg: 16, stride: '1u', start: '0u', head: `@compute @workgroup_size(16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let g = (${GROUP_INDEX}) * 16u + lid;
  if (g >= P.rows) { return; }`, reduce: 'fn reduce_sum(v: f32, lid: u32) -> f32 { return v; }' };
  return { wg: ROW_WG, stride: `${ROW_WG}u`, start: 'lid', head: entry(ROW_WG), reduce: `
var<workgroup> red: array<f32, ${ROW_WG}>;
fn reduce_sum(v: f32, lid: u32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  var r = 0.0;
  for (var i = 0u; i < ${ROW_WG}u; i++) { r += red[i]; }
  workgroupBarrier();
  return r;
}` };
}

// Dispatches a row kernel over T rows.
function dispatchRows(ctx, code, perInvocation, entries, params, T) {
  ctx.runner.dispatch(code, entries, [...params, u32(T)], perInvocation ? ceilDiv(T, 16) : T);
}
const rowsPerInvocation = (ctx) => (KERNEL_CHOICE.rows === 'auto' ? ctx.runner.cpu : KERNEL_CHOICE.rows === 'invocation');

function rmsnormShader(dtype, native16, perInvocation) {
  const w = weightReader('wt', 'W', 1, dtype, native16);
  const R = rowKernel(perInvocation);
  return `${w.enable ? 'enable f16;' : ''}
${HALF_FNS}
${ro(0, 'X')}
${w.decl}
${rw(2, 'O')}
${uniformDecl(3, ['d: u32', 'eps: f32', 'rows: u32'])}
${w.fn}
${R.reduce}
${R.head}
  let row = g * P.d;
  var ss = 0.0;
  for (var i = ${R.start}; i < P.d; i += ${R.stride}) { let v = X[P.o0 + row + i]; ss += v * v; }
  let total = reduce_sum(ss, lid);
  let inv = 1.0 / sqrt(total / f32(P.d) + P.eps);
  for (var i = ${R.start}; i < P.d; i += ${R.stride}) { O[P.o2 + row + i] = X[P.o0 + row + i] * inv * wt(P.o1 + i); }
}`;
}

const rmsnorm = {
  encode(ctx, c) {
    const [T, D] = c.inputs[0].shape;
    const wd = c.inputs[1].dtype;
    const esize = wd === 'f32' ? 4 : 2;
    const per = rowsPerInvocation(ctx);
    dispatchRows(ctx, rmsnormShader(wd, ctx.native16, per),
      per, [ctx.entry(c.inputs[0], false, 4), ctx.entry(c.inputs[1], false, esize), ctx.entry(c.outputs[0], true, 4)],
      [u32(D), f32(c.attrs.get('eps'))], T);
  },
};

function layernormShader(perInvocation) {
  const R = rowKernel(perInvocation);
  return `
${ro(0, 'X')}
${ro(1, 'W')}
${rw(2, 'O')}
${uniformDecl(3, ['n: u32', 'eps: f32', 'rows: u32'])}
${R.reduce}
${R.head}
  let row = g * P.n;
  var s = 0.0;
  for (var i = ${R.start}; i < P.n; i += ${R.stride}) { s += X[P.o0 + row + i]; }
  let mean = reduce_sum(s, lid) / f32(P.n);
  var ss = 0.0;
  for (var i = ${R.start}; i < P.n; i += ${R.stride}) { let d = X[P.o0 + row + i] - mean; ss += d * d; }
  let inv = 1.0 / sqrt(reduce_sum(ss, lid) / f32(P.n) + P.eps);
  for (var i = ${R.start}; i < P.n; i += ${R.stride}) { O[P.o2 + row + i] = (X[P.o0 + row + i] - mean) * inv * W[P.o1 + i]; }
}`;
}

const layernorm = {
  encode(ctx, c) {
    const [T, N] = c.inputs[0].shape;
    const per = rowsPerInvocation(ctx);
    dispatchRows(ctx, layernormShader(per), per,
      [ctx.entry(c.inputs[0], false, 4), ctx.entry(c.inputs[1], false, 4), ctx.entry(c.outputs[0], true, 4)],
      [u32(N), f32(c.attrs.get('eps'))], T);
  },
};

// ---- matmul: out[t][n] = sum_k x[t][k] w[n][k] ----------------------------------------------
// One invocation per tile of TM rows by TN outputs, without workgroup memory or barriers: it
// walks K four elements at a time into vec4 partial sums (four interleaved sums per output),
// with vec4 loads when x and w start on 4-element boundaries and K is a multiple of 4, else
// scalar loads and a scalar tail. Consecutive invocations take consecutive output tiles of the
// same rows, so they share the x rows they read.

// The loads of four consecutive elements (vec4<f32>) of x and w from element index i.
function matmulLoads(dtype, native16, vec) {
  const x = vec ? { decl: ro(0, 'X', 'vec4<f32>'), fn: 'fn ldx(i: u32) -> vec4<f32> { return X[i >> 2u]; }' }
    : { decl: ro(0, 'X'), fn: 'fn ldx(i: u32) -> vec4<f32> { return vec4<f32>(X[i], X[i + 1u], X[i + 2u], X[i + 3u]); }' };
  const w = weightReader('wt', 'W', 1, dtype, native16);
  let wdecl = w.decl, ldw;
  if (!vec) {
    ldw = 'fn ldw(i: u32) -> vec4<f32> { return vec4<f32>(wt(i), wt(i + 1u), wt(i + 2u), wt(i + 3u)); }';
  } else if (dtype === 'f32') {
    wdecl = ro(1, 'W', 'vec4<f32>');
    ldw = 'fn ldw(i: u32) -> vec4<f32> { return W[i >> 2u]; }';
  } else if (w.enable) {
    wdecl = ro(1, 'W', 'vec4<f16>');
    ldw = 'fn ldw(i: u32) -> vec4<f32> { return vec4<f32>(W[i >> 2u]); }';
  } else {
    wdecl = ro(1, 'W', 'vec2<u32>');
    const conv = (h) => (dtype === 'bf16' ? `bitcast<f32>((${h}) << 16u)` : `f16_bits_to_f32(${h})`);
    ldw = `fn ldw(i: u32) -> vec4<f32> {
  let p = W[i >> 2u];
  return vec4<f32>(${conv('p.x & 0xffffu')}, ${conv('p.x >> 16u')}, ${conv('p.y & 0xffffu')}, ${conv('p.y >> 16u')});
}`;
  }
  return { enable: w.enable, decl: `${x.decl}\n${wdecl}`, fns: `${vec ? '' : w.fn}\n${x.fn}\n${ldw}` };
}

function matmulShader(dtype, native16, TM, TN, vec, wg) {
  const L = matmulLoads(dtype, native16, vec);
  const rows = [...Array(TM).keys()], cols = [...Array(TN).keys()];
  const each = (f) => rows.flatMap((a) => cols.map((b) => f(a, b))).join('\n');
  return `${L.enable ? 'enable f16;' : ''}
${HALF_FNS}
${L.decl}
${rw(2, 'O')}
${uniformDecl(3, ['k: u32', 'n: u32', 't: u32', 'ntiles: u32', 'count: u32'])}
${L.fns}
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = (${GROUP_INDEX}) * ${wg}u + lid;
  if (i >= P.count) { return; }
  let n0 = (i % P.ntiles) * ${TN}u;
  let t0 = (i / P.ntiles) * ${TM}u;
${rows.map((a) => `  let xr${a} = P.o0 + min(t0 + ${a}u, P.t - 1u) * P.k;`).join('\n')}
${cols.map((b) => `  let wr${b} = P.o1 + min(n0 + ${b}u, P.n - 1u) * P.k;`).join('\n')}
${each((a, b) => `  var a${a}${b} = vec4<f32>(0.0);`)}
  let k4 = P.k & ~3u;
  for (var k = 0u; k < k4; k += 4u) {
${rows.map((a) => `    let x${a} = ldx(xr${a} + k);`).join('\n')}
${cols.map((b) => `    let w${b} = ldw(wr${b} + k);`).join('\n')}
${each((a, b) => `    a${a}${b} += x${a} * w${b};`)}
  }
${vec ? '' : `  for (var k = k4; k < P.k; k++) {
${rows.map((a) => `    let x${a} = X[xr${a} + k];`).join('\n')}
${cols.map((b) => `    let w${b} = wt(wr${b} + k);`).join('\n')}
${each((a, b) => `    a${a}${b}.x += x${a} * w${b};`)}
  }`}
${each((a, b) => `  if (t0 + ${a}u < P.t && n0 + ${b}u < P.n) { O[P.o2 + (t0 + ${a}u) * P.n + n0 + ${b}u] = (a${a}${b}.x + a${a}${b}.y) + (a${a}${b}.z + a${a}${b}.w); }`)}
}`;
}

// Tiles of up to 4 rows by 4 outputs: each x and w vector loaded serves 4 products. Workgroups
// of 64 invocations, fewer when there are few tiles, so that a small decode matmul still
// spreads over several workgroups (the unit of parallelism of CPU implementations).
function matmulPlan(T, N) {
  const TM = Math.min(T, 4), TN = 4;
  const count = Math.ceil(T / TM) * Math.ceil(N / TN);
  const wg = count >= 256 ? 64 : count >= 64 ? 32 : 16;
  return { TM, TN, wg, count };
}

const matmul = {
  supports(c) {
    if (!['f32', 'f16', 'bf16'].includes(c.inputs[1].dtype)) return `no kernel for matmul with w ${c.inputs[1].dtype}`;
    return null;
  },
  encode(ctx, c) {
    const [T, K] = c.inputs[0].shape;
    const N = c.inputs[1].shape[0];
    const wd = c.inputs[1].dtype;
    const { TM, TN, wg, count } = matmulPlan(T, N);
    const code = ([ox, ow]) => matmulShader(wd, ctx.native16, TM, TN, K % 4 === 0 && ox % 4 === 0 && ow % 4 === 0, wg);
    ctx.runner.dispatch(code,
      [ctx.entry(c.inputs[0], false, 4), ctx.entry(c.inputs[1], false, wd === 'f32' ? 4 : 2), ctx.entry(c.outputs[0], true, 4)],
      [u32(K), u32(N), u32(T), u32(Math.ceil(N / TN)), u32(count)], ceilDiv(count, wg));
  },
};

// ---- embedding: a bit-exact copy of rows, widened to f32 ------------------------------------

function embeddingShader(dtype) {
  const table = dtype === 'f32' ? 'T[P.o0 + src]'
    : dtype === 'bf16' ? 'half_of(T[(P.o0 + src) >> 1u], P.o0 + src) << 16u'
      : 'bitcast<u32>(f16_bits_to_f32(half_of(T[(P.o0 + src) >> 1u], P.o0 + src)))';
  return `${HALF_FNS}
${ro(0, 'T', 'u32')}
${ro(1, 'IDS', 'i32')}
${rw(2, 'O', 'u32')}
${statusDecl(3)}
${uniformDecl(4, ['n: u32', 'd: u32', 'v: u32'])}
${ENTRY}
  let i = g * ${WG}u + lid;
  if (i >= P.n) { return; }
  let id = IDS[P.o1 + i / P.d];
  if (id < 0 || u32(id) >= P.v) {
    report(1u, bitcast<u32>(id), P.v, 0u);
    return;
  }
  let row = u32(id);
  let src = row * P.d + i % P.d;
  O[P.o2 + i] = ${table};
}`;
}

const embedding = {
  supports(c) {
    if (!['f32', 'f16', 'bf16'].includes(c.inputs[0].dtype)) return `no kernel for embedding with table ${c.inputs[0].dtype}`;
    return null;
  },
  encode(ctx, c) {
    const [V, D] = c.inputs[0].shape;
    const n = numel(c.outputs[0].shape);
    const td = c.inputs[0].dtype;
    ctx.runner.dispatch(embeddingShader(td),
      [ctx.entry(c.inputs[0], false, td === 'f32' ? 4 : 2), ctx.entry(c.inputs[1], false, 4), ctx.entry(c.outputs[0], true, 4), ctx.status],
      [u32(n), u32(D), u32(V)], ceilDiv(n, WG));
  },
};

// ---- rope -------------------------------------------------------------------------------------
// One invocation per (row, head, j): j < rope_dim/2 rotates a pair, the rest copy one element.
// The base frequencies base^(-2i/rope_dim) are formed in f64 here and rounded once.

function ropeShader(factors) {
  return `${MATH_FNS}
${ro(0, 'X')}
${ro(1, 'POS', 'i32')}
${ro(2, 'FREQ')}
${factors ? ro(3, 'FF') : ''}
${rw(factors ? 4 : 3, 'O')}
${uniformDecl(factors ? 5 : 4, ['n: u32', 'h: u32', 'hd: u32', 'rd: u32', 'neox: u32', 'per_head: u32'])}
${ENTRY}
  let i = g * ${WG}u + lid;
  if (i >= P.n) { return; }
  let j = i % P.per_head;
  let head = (i / P.per_head) % P.h;
  let t = i / (P.per_head * P.h);
  let base = t * P.h * P.hd + head * P.hd;
  let xo = P.o0 + base;
  let oo = P.o${factors ? 4 : 3} + base;
  let hr = P.rd / 2u;
  if (j >= hr) {
    let d = P.rd + (j - hr);
    O[oo + d] = X[xo + d];
    return;
  }
  var a = 2u * j;
  var b = 2u * j + 1u;
  if (P.neox == 1u) { a = j; b = j + hr; }
  let freq = FREQ[P.o2 + j]${factors ? ' / FF[P.o3 + j]' : ''};
  let theta = f32(POS[P.o1 + t]) * freq;
  let sc = sincos_acc(theta);
  let xa = X[xo + a];
  let xb = X[xo + b];
  O[oo + a] = xa * sc.y - xb * sc.x;
  O[oo + b] = xa * sc.x + xb * sc.y;
}`;
}

const rope = {
  encode(ctx, c) {
    const [T] = c.inputs[0].shape;
    const H = c.attrs.get('n_heads'), hd = c.attrs.get('head_dim'), rd = c.attrs.get('rope_dim');
    const base = c.attrs.get('base');
    const factors = c.inputs.length > 2;
    const perHead = rd / 2 + (hd - rd);
    const freq = ctx.constantF32(`rope ${base} ${rd}`, () => {
      const f = new Float32Array(Math.max(1, rd / 2));
      for (let i = 0; i < rd / 2; ++i) f[i] = Math.pow(base, (-2 * i) / rd);
      return f;
    });
    const entries = [ctx.entry(c.inputs[0], false, 4), ctx.entry(c.inputs[1], false, 4), freq];
    if (factors) entries.push(ctx.entry(c.inputs[2], false, 4));
    entries.push(ctx.entry(c.outputs[0], true, 4));
    const n = T * H * perHead;
    ctx.runner.dispatch(ropeShader(factors), entries,
      [u32(n), u32(H), u32(hd), u32(rd), u32(c.attrs.get('pairing')), u32(perHead)], ceilDiv(n, WG));
  },
};

// ---- kv_store: rows pos.. of each cache receive k / v, bit for bit -----------------------

// The rows start at pos, read on the GPU; a pos whose rows do not fit is reported (status
// code 2) and nothing is written.
const KV_STORE = `
${rw(0, 'C', 'u32')}
${ro(1, 'S', 'u32')}
${ro(2, 'POS', 'i32')}
${statusDecl(3)}
${uniformDecl(4, ['n: u32', 'c: u32', 't: u32', 's: u32'])}
${ENTRY}
  let i = g * ${WG}u + lid;
  if (i >= P.n) { return; }
  let pos = POS[P.o2];
  if (pos < 0 || u32(pos) > P.s || P.t > P.s - u32(pos)) {
    report(2u, bitcast<u32>(pos), P.s, P.t);
    return;
  }
  C[P.o0 + u32(pos) * P.c + i] = S[P.o1 + i];
}`;

const kvStore = {
  encode(ctx, c) {
    const S = c.inputs[0].shape[0], C = c.inputs[0].shape[1], T = c.inputs[2].shape[0];
    const n = numel(c.inputs[2].shape);
    for (let k = 0; k < 2; ++k)
      ctx.runner.dispatch(KV_STORE,
        [ctx.entry(c.outputs[k], true, 4), ctx.entry(c.inputs[2 + k], false, 4), ctx.entry(c.inputs[4], false, 4), ctx.status],
        [u32(n), u32(C), u32(T), u32(S)], ceilDiv(n, WG));
  },
};

// ---- attention ------------------------------------------------------------------------------
// Two kernels. Short key ranges: one invocation per (query row, head) walks its keys once with
// an online softmax (the running maximum rescales the sum and the accumulator when it grows),
// without workgroup memory or barriers. Long key ranges: one workgroup of ATT_WG per (query
// row, head); pass 1 finds the maximum score over the visible keys, pass 2, over chunks of
// keys, forms p_j = exp(s_j - max) into workgroup memory, then each invocation accumulates
// sum_j p_j v[j][d] for its own output dimensions d. Its reductions take two barriers each.

const ATT_MAX_HD = 512, ATT_CHUNK = 1024, ATT_WG = 64;
// The per-invocation kernel's limits: head_dim (its private arrays) and, except on CPU
// implementations, keys per query row (beyond them a GPU wants more invocations per row).
const ATT_SMALL_HD = 256, ATT_SMALL_KEYS = 256;

const ATT_PARAMS = ['t: u32', 'p: u32', 'h: u32', 'group: u32', 'hd: u32', 'kvw: u32', 'window: u32', 'scale: f32', 'cap: f32'];
const ATT_BINDINGS = `${ro(0, 'Q')}
${ro(1, 'K')}
${ro(2, 'V')}
${rw(3, 'O')}
${uniformDecl(4, ATT_PARAMS)}`;

// The visible keys of query row t: first..last.
const ATT_RANGE = `
  let last = P.p - P.t + t;
  var first = 0u;
  if (P.window > 0u && last + 1u > P.window) { first = last + 1u - P.window; }`;

function attentionSmallShader(hd, wg) {
  return `${MATH_FNS}
${ATT_BINDINGS}
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = (${GROUP_INDEX}) * ${wg}u + lid;
  if (i >= P.t * P.h) { return; }
  let t = i / P.h;
  let head = i % P.h;
  let qbase = P.o0 + t * P.h * ${hd}u + head * ${hd}u;
  let kvbase = (head / P.group) * ${hd}u;
${ATT_RANGE}
  var q: array<f32, ${hd}>;
  var acc: array<f32, ${hd}>;
  for (var d = 0u; d < ${hd}u; d++) { q[d] = Q[qbase + d]; acc[d] = 0.0; }
  var m = -3.402823e38;
  var sum = 0.0;
  for (var j = first; j <= last; j++) {
    let kr = P.o1 + j * P.kvw + kvbase;
    var s = 0.0;
    for (var d = 0u; d < ${hd}u; d++) { s += q[d] * K[kr + d]; }
    s = s * P.scale;
    if (P.cap > 0.0) { s = P.cap * tanh_acc(s / P.cap); }
    if (s > m) {
      let c = exp(m - s);
      sum = sum * c;
      for (var d = 0u; d < ${hd}u; d++) { acc[d] = acc[d] * c; }
      m = s;
    }
    let p = exp(s - m);
    sum += p;
    let vr = P.o2 + j * P.kvw + kvbase;
    for (var d = 0u; d < ${hd}u; d++) { acc[d] += p * V[vr + d]; }
  }
  let obase = P.o3 + t * P.h * ${hd}u + head * ${hd}u;
  for (var d = 0u; d < ${hd}u; d++) { O[obase + d] = acc[d] / sum; }
}`;
}

const ATT_PER = ATT_MAX_HD / ATT_WG;
const ATTENTION = `${MATH_FNS}
${ATT_BINDINGS}
var<workgroup> qs: array<f32, ${ATT_MAX_HD}>;
var<workgroup> ps: array<f32, ${ATT_CHUNK}>;
var<workgroup> red: array<f32, ${ATT_WG}>;
// Every invocation sums (or takes the maximum of) all the partials itself: two barriers.
fn reduce_sum(v: f32, lid: u32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  var r = 0.0;
  for (var i = 0u; i < ${ATT_WG}u; i++) { r += red[i]; }
  workgroupBarrier();
  return r;
}
fn reduce_max(v: f32, lid: u32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  var r = red[0];
  for (var i = 1u; i < ${ATT_WG}u; i++) { r = max(r, red[i]); }
  workgroupBarrier();
  return r;
}
fn score(j: u32, kbase: u32) -> f32 {
  var s = 0.0;
  let kr = P.o1 + j * P.kvw + kbase;
  for (var i = 0u; i < P.hd; i++) { s += qs[i] * K[kr + i]; }
  s = s * P.scale;
  if (P.cap > 0.0) { s = P.cap * tanh_acc(s / P.cap); }
  return s;
}
${entry(ATT_WG)}
  let t = g / P.h;
  let head = g % P.h;
  let qbase = P.o0 + t * P.h * P.hd + head * P.hd;
  let kbase = (head / P.group) * P.hd;
  for (var i = lid; i < P.hd; i += ${ATT_WG}u) { qs[i] = Q[qbase + i]; }
  workgroupBarrier();
${ATT_RANGE}
  var m = -3.402823e38;
  for (var j = first + lid; j <= last; j += ${ATT_WG}u) { m = max(m, score(j, kbase)); }
  let mx = reduce_max(m, lid);
  var acc: array<f32, ${ATT_PER}>;
  for (var r = 0u; r < ${ATT_PER}u; r++) { acc[r] = 0.0; }
  var sum = 0.0;
  for (var c0 = first; c0 <= last; c0 += ${ATT_CHUNK}u) {
    let c1 = min(last + 1u, c0 + ${ATT_CHUNK}u);
    for (var j = c0 + lid; j < c1; j += ${ATT_WG}u) {
      let p = exp(score(j, kbase) - mx);
      ps[j - c0] = p;
      sum += p;
    }
    workgroupBarrier();
    for (var r = 0u; r < ${ATT_PER}u; r++) {
      let d = lid + r * ${ATT_WG}u;
      if (d < P.hd) {
        var a = acc[r];
        for (var j = c0; j < c1; j++) { a += ps[j - c0] * V[P.o2 + j * P.kvw + kbase + d]; }
        acc[r] = a;
      }
    }
    workgroupBarrier();
  }
  let total = reduce_sum(sum, lid);
  let obase = P.o3 + t * P.h * P.hd + head * P.hd;
  for (var r = 0u; r < ${ATT_PER}u; r++) {
    let d = lid + r * ${ATT_WG}u;
    if (d < P.hd) { O[obase + d] = acc[r] / total; }
  }
}`;

const attention = {
  supports(c) {
    const hd = c.attrs.get('head_dim');
    if (hd > ATT_MAX_HD) return `no kernel for attention with head_dim ${hd} (at most ${ATT_MAX_HD})`;
    const w = c.attrs.get('window') ?? 0;
    if (w >= 2 ** 32) return `no kernel for attention with window ${w} (at most 2^32 - 1)`;
    return null;
  },
  encode(ctx, c) {
    const T = c.inputs[0].shape[0], Pn = c.inputs[1].shape[0];
    const H = c.attrs.get('n_heads'), KV = c.attrs.get('n_kv_heads'), hd = c.attrs.get('head_dim');
    const window = c.attrs.get('window') ?? 0, cap = c.attrs.get('softcap') ?? 0;
    const keys = window > 0 ? Math.min(window, Pn) : Pn;
    const entries = [ctx.entry(c.inputs[0], false, 4), ctx.entry(c.inputs[1], false, 4), ctx.entry(c.inputs[2], false, 4),
      ctx.entry(c.outputs[0], true, 4)];
    const params = [u32(T), u32(Pn), u32(H), u32(H / KV), u32(hd), u32(KV * hd), u32(window), f32(c.attrs.get('scale')), f32(cap)];
    const choice = KERNEL_CHOICE.attention;
    const small = hd <= ATT_SMALL_HD && (choice === 'auto' ? keys <= ATT_SMALL_KEYS || ctx.runner.cpu : choice === 'invocation');
    if (small) {
      const n = T * H, wg = n >= 256 ? 64 : 16;
      ctx.runner.dispatch(attentionSmallShader(hd, wg), entries, params, ceilDiv(n, wg));
    } else {
      ctx.runner.dispatch(ATTENTION, entries, params, T * H);
    }
  },
};

// ---- mixture of experts -----------------------------------------------------------------------
// moe_route: one invocation per token row. Expert e is chosen when fewer than k experts rank
// above it: a larger logit, or an equal logit at a lower index (the catalog's tie rule, decided
// on the logits, not on the rounded p). The row of route first receives p = exp(l - max) of
// the chosen experts (0 elsewhere), then is scaled by 1 / (the sum of all p), or with norm by
// 1 / (the sum of the chosen p).

const MOE_ROUTE = `
${ro(0, 'L')}
${rw(1, 'R')}
${uniformDecl(2, ['t: u32', 'e: u32', 'k: u32', 'norm: u32'])}
@compute @workgroup_size(16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = (${GROUP_INDEX}) * 16u + lid;
  if (t >= P.t) { return; }
  let l = P.o0 + t * P.e;
  let r = P.o1 + t * P.e;
  var mx = L[l];
  for (var e = 1u; e < P.e; e++) { mx = max(mx, L[l + e]); }
  var sum = 0.0;
  var chosen = 0.0;
  for (var e = 0u; e < P.e; e++) {
    let le = L[l + e];
    let p = exp(le - mx);
    sum += p;
    var above = 0u;
    for (var j = 0u; j < P.e; j++) {
      let lj = L[l + j];
      if (lj > le || (lj == le && j < e)) { above++; }
    }
    var v = 0.0;
    if (above < P.k) { v = p; chosen += p; }
    R[r + e] = v;
  }
  let inv = 1.0 / select(sum, chosen, P.norm == 1u);
  for (var e = 0u; e < P.e; e++) { R[r + e] = R[r + e] * inv; }
}`;

const moeRoute = {
  encode(ctx, c) {
    const [T, E] = c.inputs[0].shape;
    ctx.runner.dispatch(MOE_ROUTE, [ctx.entry(c.inputs[0], false, 4), ctx.entry(c.outputs[0], true, 4)],
      [u32(T), u32(E), u32(c.attrs.get('k')), u32(c.attrs.get('norm'))], ceilDiv(T, 16));
  },
};

// moe_ffn in two kernels over a scratch act [tokens, E, H] (f32), a chunk of tokens at a time
// so that act fits a binding. moe_gate_up: one invocation per (token t, expert e, row h),
// act[t][e][h] = silu(gate_e[h] . x[t]) * (up_e[h] . x[t]); an invocation whose route[t][e] is
// 0 returns at once, so an unchosen expert's weights (which may hold anything) are never read
// and its act rows are never written. moe_down: one invocation per (token t, column d), the
// sum over the experts e with route[t][e] != 0, in expert order, of
// route[t][e] * (down_e[d] . act[t][e]).

function moeGateUpShader(dtype, native16) {
  const g = weightReader('gw', 'G', 2, dtype, native16), u = weightReader('uw', 'U', 3, dtype, native16);
  return `${g.enable ? 'enable f16;' : ''}
${HALF_FNS}
${ro(0, 'X')}
${ro(1, 'R')}
${g.decl}
${u.decl}
${rw(4, 'ACT')}
${uniformDecl(5, ['t0: u32', 'n: u32', 'd: u32', 'h: u32', 'e: u32'])}
${g.fn}
${u.fn}
${ENTRY}
  let i = g * ${WG}u + lid;
  if (i >= P.n) { return; }
  let h = i % P.h;
  let e = (i / P.h) % P.e;
  let tc = i / (P.h * P.e);
  let t = P.t0 + tc;
  if (R[P.o1 + t * P.e + e] == 0.0) { return; }
  let xr = P.o0 + t * P.d;
  let wr = (e * P.h + h) * P.d;
  var ga = 0.0;
  var ua = 0.0;
  for (var k = 0u; k < P.d; k++) {
    let xv = X[xr + k];
    ga += xv * gw(P.o2 + wr + k);
    ua += xv * uw(P.o3 + wr + k);
  }
  ACT[P.o4 + i] = ga / (1.0 + exp(-ga)) * ua;
}`;
}

function moeDownShader(dtype, native16) {
  const w = weightReader('dw', 'W', 2, dtype, native16);
  return `${w.enable ? 'enable f16;' : ''}
${HALF_FNS}
${ro(0, 'ACT')}
${ro(1, 'R')}
${w.decl}
${rw(3, 'O')}
${uniformDecl(4, ['t0: u32', 'n: u32', 'd: u32', 'h: u32', 'e: u32'])}
${w.fn}
${ENTRY}
  let i = g * ${WG}u + lid;
  if (i >= P.n) { return; }
  let d = i % P.d;
  let tc = i / P.d;
  let t = P.t0 + tc;
  var acc = 0.0;
  for (var e = 0u; e < P.e; e++) {
    let r = R[P.o1 + t * P.e + e];
    if (r == 0.0) { continue; }
    let ar = P.o0 + (tc * P.e + e) * P.h;
    let wr = P.o2 + (e * P.d + d) * P.h;
    var s = 0.0;
    for (var k = 0u; k < P.h; k++) { s += ACT[ar + k] * dw(wr + k); }
    acc += r * s;
  }
  O[P.o3 + t * P.d + d] = acc;
}`;
}

const moeFfn = {
  supports(c) {
    const E = c.inputs[1].shape[1], H = c.inputs[2].shape[1];
    const most = KERNEL_CHOICE.moeActBytes / 4;
    if (E * H > most) return `no kernel for moe_ffn with E*H = ${E * H} (at most ${most})`;
    return null;
  },
  encode(ctx, c) {
    const [T, D] = c.inputs[0].shape;
    const E = c.inputs[1].shape[1], H = c.inputs[2].shape[1];
    const wd = c.inputs[2].dtype, esize = wd === 'f32' ? 4 : 2;
    const r = ctx.runner;
    const limit = Math.min(KERNEL_CHOICE.moeActBytes, (r.limits.maxStorageBufferBindingSize || 128 * 1024 * 1024) - r.align);
    const chunk = Math.max(1, Math.min(T, Math.floor(limit / (E * H * 4))));
    const gateUp = moeGateUpShader(wd, ctx.native16), down = moeDownShader(wd, ctx.native16);
    for (let t0 = 0; t0 < T; t0 += chunk) {
      const tn = Math.min(chunk, T - t0);
      const act = r.tempBuffer(tn * E * H * 4, GPUBufferUsage.STORAGE);
      const actEntry = (writable) => ({ buffer: act, offset: 0, bytes: tn * E * H * 4, esize: 4, writable });
      const n1 = tn * E * H;
      r.dispatch(gateUp, [ctx.entry(c.inputs[0], false, 4), ctx.entry(c.inputs[1], false, 4),
        ctx.entry(c.inputs[2], false, esize), ctx.entry(c.inputs[3], false, esize), actEntry(true)],
      [u32(t0), u32(n1), u32(D), u32(H), u32(E)], ceilDiv(n1, WG));
      const n2 = tn * D;
      r.dispatch(down, [actEntry(false), ctx.entry(c.inputs[1], false, 4), ctx.entry(c.inputs[4], false, esize),
        ctx.entry(c.outputs[0], true, 4)], [u32(t0), u32(n2), u32(D), u32(H), u32(E)], ceilDiv(n2, WG));
    }
  },
};

export const KERNELS = {
  embedding, rmsnorm, matmul, rope, kv_store: kvStore, attention,
  swiglu: elementwiseKernel('swiglu'), add: elementwiseKernel('add'), gelu: elementwiseKernel('gelu'),
  layernorm, bias: elementwiseKernel('bias'), mul: elementwiseKernel('mul'), scale: elementwiseKernel('scale'),
  softcap: elementwiseKernel('softcap'), sigmoid_gate: elementwiseKernel('sigmoid_gate'),
  moe_route: moeRoute, moe_ffn: moeFfn,
};
