// The WebGPU kernels against plain float64 references written from the catalog's semantics
// (src/ops/*.cpp), through the device's own protocol path (ALLOC, WRITE, RUN, READ), with
// tensors packed at odd offsets in one buffer. Tolerances are the catalog's uncalibrated
// floors (docs/oracle.md); copies must be bit-exact. Exits 0 on pass, 1 on a failure, 77 when
// no WebGPU adapter is available. `--only NAME` runs the cases whose label contains NAME.
import { Device } from '../device.js';
import { openNodeGpu } from '../node-gpu.mjs';
import { KERNEL_CHOICE } from '../kernels/ops.js';
import { Client, Arena, rng, weights, f32s, i32s, measure, SKIP } from './harness.mjs';

const U = 2 ** -24;
const floor = (c, K) => Math.max(1e-6, c * Math.sqrt(K) * U);

// ---- references (f64) -----------------------------------------------------------------------
const ref = {
  embedding(table, ids, D) {
    const out = new Float64Array(ids.length * D);
    ids.forEach((id, t) => { for (let d = 0; d < D; ++d) out[t * D + d] = table[id * D + d]; });
    return out;
  },
  rmsnorm(x, w, T, D, eps) {
    const out = new Float64Array(T * D);
    for (let t = 0; t < T; ++t) {
      let ss = 0;
      for (let d = 0; d < D; ++d) ss += x[t * D + d] ** 2;
      const inv = 1 / Math.sqrt(ss / D + eps);
      for (let d = 0; d < D; ++d) out[t * D + d] = x[t * D + d] * inv * w[d];
    }
    return out;
  },
  layernorm(x, w, T, N, eps) {
    const out = new Float64Array(T * N);
    for (let t = 0; t < T; ++t) {
      let s = 0;
      for (let i = 0; i < N; ++i) s += x[t * N + i];
      const mean = s / N;
      let ss = 0;
      for (let i = 0; i < N; ++i) ss += (x[t * N + i] - mean) ** 2;
      const inv = 1 / Math.sqrt(ss / N + eps);
      for (let i = 0; i < N; ++i) out[t * N + i] = (x[t * N + i] - mean) * inv * w[i];
    }
    return out;
  },
  matmul(x, w, T, K, N) {
    const out = new Float64Array(T * N);
    for (let t = 0; t < T; ++t)
      for (let n = 0; n < N; ++n) {
        let acc = 0;
        for (let k = 0; k < K; ++k) acc += x[t * K + k] * w[n * K + k];
        out[t * N + n] = acc;
      }
    return out;
  },
  rope(x, pos, T, H, hd, rd, base, neox, factors) {
    const W = H * hd, out = Float64Array.from(x);
    for (let t = 0; t < T; ++t)
      for (let h = 0; h < H; ++h)
        for (let i = 0; i < rd / 2; ++i) {
          const theta = pos[t] * (Math.pow(base, (-2 * i) / rd) / (factors ? factors[i] : 1));
          const a = neox ? i : 2 * i, b = neox ? i + rd / 2 : 2 * i + 1;
          const o = t * W + h * hd;
          out[o + a] = x[o + a] * Math.cos(theta) - x[o + b] * Math.sin(theta);
          out[o + b] = x[o + a] * Math.sin(theta) + x[o + b] * Math.cos(theta);
        }
    return out;
  },
  attention(q, k, v, T, P, H, KV, hd, scale, window, cap) {
    const out = new Float64Array(T * H * hd), group = H / KV;
    for (let t = 0; t < T; ++t) {
      const last = P - T + t, first = window > 0 ? Math.max(0, last - window + 1) : 0;
      for (let h = 0; h < H; ++h) {
        const kh = Math.floor(h / group), sc = [];
        let mx = -Infinity;
        for (let j = first; j <= last; ++j) {
          let s = 0;
          for (let i = 0; i < hd; ++i) s += q[t * H * hd + h * hd + i] * k[j * KV * hd + kh * hd + i];
          s *= scale;
          if (cap > 0) s = cap * Math.tanh(s / cap);
          sc.push(s); mx = Math.max(mx, s);
        }
        let sum = 0;
        for (let j = 0; j < sc.length; ++j) sum += (sc[j] = Math.exp(sc[j] - mx));
        for (let i = 0; i < hd; ++i) {
          let acc = 0;
          for (let j = first; j <= last; ++j) acc += sc[j - first] * v[j * KV * hd + kh * hd + i];
          out[t * H * hd + h * hd + i] = acc / sum;
        }
      }
    }
    return out;
  },
  // The k largest logits, the lower index first among equals (a stable sort).
  moe_route(l, T, E, k, norm) {
    const out = new Float64Array(T * E);
    for (let t = 0; t < T; ++t) {
      const row = Array.from(l.slice(t * E, (t + 1) * E));
      const mx = Math.max(...row), p = row.map((v) => Math.exp(v - mx)), sum = p.reduce((a, b) => a + b, 0);
      const order = row.map((_, e) => e).sort((a, b) => row[b] - row[a] || a - b).slice(0, k);
      const chosen = order.reduce((a, e) => a + p[e] / sum, 0);
      for (const e of order) out[t * E + e] = norm ? p[e] / sum / chosen : p[e] / sum;
    }
    return out;
  },
  moe_ffn(x, route, gate, up, down, T, D, H, E) {
    const out = new Float64Array(T * D), act = new Float64Array(H);
    for (let t = 0; t < T; ++t)
      for (let e = 0; e < E; ++e) {
        const r = route[t * E + e];
        if (r === 0) continue;
        for (let h = 0; h < H; ++h) {
          let g = 0, u = 0;
          for (let d = 0; d < D; ++d) {
            g += x[t * D + d] * gate[(e * H + h) * D + d];
            u += x[t * D + d] * up[(e * H + h) * D + d];
          }
          act[h] = (g / (1 + Math.exp(-g))) * u;
        }
        for (let d = 0; d < D; ++d) {
          let s = 0;
          for (let h = 0; h < H; ++h) s += down[(e * D + d) * H + h] * act[h];
          out[t * D + d] += r * s;
        }
      }
    return out;
  },
};
const sigmoid = (z) => (z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z)));
function erfc(x) { // Abramowitz-Stegun-free: continued fraction via high-precision series
  // erfc through the complementary error function's relation to the incomplete gamma
  // function, evaluated with Lentz's continued fraction (x > 0.5) or the Taylor series.
  const z = Math.abs(x);
  let r;
  if (z < 2) {
    let sum = z, term = z;
    for (let n = 1; n < 200; ++n) { term *= -z * z / n; sum += term / (2 * n + 1); if (Math.abs(term) < 1e-18) break; }
    r = 1 - (2 / Math.sqrt(Math.PI)) * sum;
  } else {
    let f = 0; // continued fraction of erfc(z) * sqrt(pi) * exp(z^2) = 1/(z+ 1/2/(z+ 1/(z+ 3/2/(z+...
    for (let n = 120; n >= 1; --n) f = (n / 2) / (z + f);
    r = Math.exp(-z * z) / Math.sqrt(Math.PI) / (z + f);
  }
  return x < 0 ? 2 - r : r;
}

// ---- cases ----------------------------------------------------------------------------------
const cases = [];
const add = (label, fn) => cases.push({ label, fn });
// A case for each of an op's kernels (KERNEL_CHOICE), whichever this adapter would pick.
const addEach = (kind, label, fn) => {
  for (const choice of ['invocation', 'workgroup'])
    add(`${label} (${choice} kernel)`, async function (c, r) {
      KERNEL_CHOICE[kind] = choice;
      try { return await fn.call(this, c, r); } finally { KERNEL_CHOICE[kind] = 'auto'; }
    });
};

async function check(label, arena, out, expected, tol) {
  const got = await arena.readF32(out);
  if (tol === 'exact') {
    const want = Float32Array.from(expected);
    const a = new Uint32Array(got.buffer), b = new Uint32Array(want.buffer);
    let bad = -1;
    for (let i = 0; i < a.length; ++i) if (a[i] !== b[i]) { bad = i; break; }
    if (bad >= 0) throw new Error(`not bit-exact at [${bad}]: expected ${want[bad]}, got ${got[bad]}`);
    return 'exact';
  }
  const { E, worst } = measure(expected, got);
  if (!(E <= tol)) throw new Error(`E ${E.toExponential(2)} > tolerance ${tol.toExponential(2)} (worst at [${worst}]: expected ${expected[worst]}, got ${got[worst]})`);
  return `E ${E.toExponential(1)} (${(E / tol).toFixed(2)}x tol)`;
}

// An Arena whose tensors start on 16-byte boundaries (kernels take a vector-load path there).
class AlignedArena extends Arena {
  add(dtype, shape, bytes) {
    const esize = dtype === 'f16' || dtype === 'bf16' ? 2 : 4;
    const offset = Math.ceil(this.size / 16) * 16 + 16 * (1 + this.r.int(0, 3));
    const n = shape.reduce((a, b) => a * b, 1);
    const t = { buffer: 0, offset, dtype, shape, bytes: bytes ?? new Uint8Array(n * esize) };
    this.size = offset + n * esize;
    this.items.push(t);
    return t;
  }
}

for (const dtype of ['f32', 'f16', 'bf16']) {
  add(`embedding ${dtype} V=97 D=67 first and last rows`, async (c, r) => {
    const V = 97, D = 67, big = dtype === 'f16' ? 65000 : 1e30;
    const tab = weights(dtype, V * D, -1, 1, r);
    // Both ends of the range and (for f16) subnormals.
    for (let i = 0; i < 40; ++i) {
      const v = i % 2 ? big : (dtype === 'f16' ? 3e-6 : 1e-38);
      const w = weights(dtype, 1, v, v, r);
      tab.values[i] = w.values[0];
      tab.bytes.set(w.bytes, i * w.bytes.length);
    }
    const ids = i32s([0, 5, 96, 3, 3, 50, 96]);
    const a = new Arena(c, r);
    const t0 = a.add(dtype, [V, D], tab.bytes), t1 = a.add('i32', [7], ids.bytes), o = a.add('f32', [7, D]);
    await a.upload();
    await c.run({ op: 'embedding', attrs: {}, inputs: [t0, t1], outputs: [o] });
    return check(this, a, o, ref.embedding(tab.values, ids.values, D), 'exact');
  });
  for (const [T, D, s, eps] of [[3, 67, 1, 1e-5], [2, 4099, 1, 1e-6], [4, 96, 3e-3, 1e-5], [300, 200, 3e4, 1e-5]])
    addEach('rows', `rmsnorm ${dtype} T=${T} D=${D} scale ${s}`, async function (c, r) {
      const x = f32s(T * D, -s, s, r), w = weights(dtype, D, -2, 2, r);
      const a = new Arena(c, r);
      const tx = a.add('f32', [T, D], x.bytes), tw = a.add(dtype, [D], w.bytes), o = a.add('f32', [T, D]);
      await a.upload();
      await c.run({ op: 'rmsnorm', attrs: { eps }, inputs: [tx, tw], outputs: [o] });
      return check(this, a, o, ref.rmsnorm(x.values, w.values, T, D, eps), floor(4, D));
    });
  for (const [T, K, N, xs, ws] of [[1, 67, 37, 1, 1], [33, 256, 70, 1, 1], [5, 4099, 19, 1, 1], [6, 1030, 53, 1, 1],
    [3, 136, 21, 3e3, 1], [2, 72, 9, 1e-2, dtype === 'f32' ? 1e4 : 6e4], [1, 3, 1, 1, 1]])
    add(`matmul ${dtype} T=${T} K=${K} N=${N}`, async (c, r) => {
      const x = f32s(T * K, -xs, xs, r), w = weights(dtype, N * K, -ws, ws, r);
      const a = new Arena(c, r);
      const tx = a.add('f32', [T, K], x.bytes), tw = a.add(dtype, [N, K], w.bytes), o = a.add('f32', [T, N]);
      await a.upload();
      await c.run({ op: 'matmul', attrs: {}, inputs: [tx, tw], outputs: [o] });
      return check(this, a, o, ref.matmul(x.values, w.values, T, K, N), floor(8, K));
    });
  for (const [T, K, N] of [[1, 64, 172], [5, 64, 37], [7, 256, 33], [3, 4, 8], [2, 1028, 5]])
    add(`matmul ${dtype} T=${T} K=${K} N=${N} aligned`, async (c, r) => {
      const x = f32s(T * K, -1, 1, r), w = weights(dtype, N * K, -1, 1, r);
      const a = new AlignedArena(c, r);
      const tx = a.add('f32', [T, K], x.bytes), tw = a.add(dtype, [N, K], w.bytes), o = a.add('f32', [T, N]);
      await a.upload();
      await c.run({ op: 'matmul', attrs: {}, inputs: [tx, tw], outputs: [o] });
      return check(this, a, o, ref.matmul(x.values, w.values, T, K, N), floor(8, K));
    });
}

for (const neox of [0, 1]) {
  const p = neox ? 'neox' : 'adjacent';
  for (const [label, T, H, hd, rd, pos0, nf, flo, fhi] of [
    ['prefill from 0', 7, 3, 16, 16, 0, 0], ['decode at 1000', 1, 4, 64, 64, 1000, 0],
    ['partial rope_dim 8 of 24', 5, 2, 24, 8, 30, 0], ['long context at 8190', 4, 2, 128, 128, 8190, 0],
    ['freq_factors decode at 3000', 1, 4, 64, 64, 3000, 32, 1, 8],
    ['freq_factors partial 12 of 20', 6, 3, 20, 12, 0, 6, 0.5, 40]])
    add(`rope ${p} ${label}`, async (c, r) => {
      const x = f32s(T * H * hd, -2, 2, r), pos = i32s(Array.from({ length: T }, (_, i) => pos0 + i));
      const a = new Arena(c, r);
      const tx = a.add('f32', [T, H * hd], x.bytes), tp = a.add('i32', [T], pos.bytes);
      const inputs = [tx, tp];
      let ff = null;
      if (nf) { ff = f32s(nf, flo, fhi, r); inputs.push(a.add('f32', [nf], ff.bytes)); }
      const o = a.add('f32', [T, H * hd]);
      await a.upload();
      await c.run({ op: 'rope', attrs: { n_heads: H, head_dim: hd, rope_dim: rd, base: 10000, pairing: neox }, inputs, outputs: [o] });
      // A correct f32 kernel's error grows with the position (the angle rounded in f32).
      const tol = Math.max(floor(4096, 1), (pos0 + T) * 4 * U * 4);
      return check(this, a, o, ref.rope(x.values, pos.values, T, H, hd, rd, 10000, neox, ff && ff.values), tol);
    });
}

for (const [label, S, C, T, pos] of [['prefill at 0', 16, 24, 5, 0], ['decode at 7', 16, 24, 1, 7],
  ['4 rows after 9', 16, 40, 4, 9], ['last rows', 16, 67, 3, 13]])
  add(`kv_store ${label}`, async (c, r) => {
    const kc = f32s(S * C, -1, 1, r), vc = f32s(S * C, -1, 1, r), k = f32s(T * C, -1, 1, r), v = f32s(T * C, -1, 1, r);
    const a = new Arena(c, r);
    const tkc = a.add('f32', [S, C], kc.bytes), tvc = a.add('f32', [S, C], vc.bytes);
    const tk = a.add('f32', [T, C], k.bytes), tv = a.add('f32', [T, C], v.bytes), tp = a.add('i32', [1], i32s([pos]).bytes);
    await a.upload();
    await c.run({ op: 'kv_store', attrs: {}, inputs: [tkc, tvc, tk, tv, tp], outputs: [tkc, tvc] });
    const wantK = Float64Array.from(kc.values), wantV = Float64Array.from(vc.values);
    wantK.set(k.values, pos * C); wantV.set(v.values, pos * C);
    await check(this, a, tkc, wantK, 'exact');
    return check(this, a, tvc, wantV, 'exact');
  });

for (const [label, T, P, H, KV, hd, qk, window, cap] of [
  ['decode GQA 8 on 2', 1, 37, 8, 2, 16, 1, 0, 0], ['prefill T=P=19 GQA 6 on 3', 19, 19, 6, 3, 8, 1, 0, 0],
  ['decode over 1500', 1, 1500, 4, 2, 64, 1, 0, 0], ['5 rows after 60', 5, 65, 4, 4, 32, 1, 0, 0],
  ['large scores', 3, 40, 4, 2, 128, 7, 0, 0], ['one KV head (GQA 4)', 2, 12, 4, 1, 16, 1, 0, 0],
  ['head_dim 84 over 150 keys', 2, 150, 4, 2, 84, 1, 0, 0], ['head_dim 256', 1, 30, 4, 2, 256, 1, 0, 0],
  ['window 16 decode', 1, 40, 4, 2, 16, 1, 16, 0], ['window 7 prefill', 30, 30, 2, 1, 24, 1, 7, 0],
  ['window 1', 4, 9, 2, 2, 8, 1, 1, 0], ['softcap 50', 3, 40, 4, 2, 128, 12, 0, 50],
  ['softcap 20 window 10', 6, 33, 4, 2, 36, 4, 10, 20], ['prefill 1100 keys over chunks', 2, 1100, 2, 1, 8, 1, 0, 0]]) {
  addEach('attention', `attention ${label}`, async function (c, r) {
    const q = f32s(T * H * hd, -qk, qk, r), k = f32s(P * KV * hd, -qk, qk, r), v = f32s(P * KV * hd, -1, 1, r);
    const a = new Arena(c, r);
    const tq = a.add('f32', [T, H * hd], q.bytes), tk = a.add('f32', [P, KV * hd], k.bytes);
    const tv = a.add('f32', [P, KV * hd], v.bytes), o = a.add('f32', [T, H * hd]);
    await a.upload();
    const attrs = { n_heads: H, n_kv_heads: KV, head_dim: hd, scale: 1 / Math.sqrt(hd) };
    if (window) attrs.window = window;
    if (cap) attrs.softcap = cap;
    await c.run({ op: 'attention', attrs, inputs: [tq, tk, tv], outputs: [o] });
    const keys = window ? Math.min(window, P) : P;
    return check(this, a, o, ref.attention(q.values, k.values, v.values, T, P, H, KV, hd, attrs.scale, window, cap), floor(8, keys * hd));
  });
}

const unary = {
  gelu0: [(x) => 0.5 * x * erfc(-x / Math.SQRT2), 64, 'gelu', { approx: 0 }],
  gelu1: [(x) => x / (1 + Math.exp(-2 * Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))), 64, 'gelu', { approx: 1 }],
  scale: [(x) => x * -3.7, 4, 'scale', { s: -3.7 }],
  softcap: [(x) => 30 * Math.tanh(x / 30), 8, 'softcap', { cap: 30 }],
};
for (const [kind, [fn, cf, op, attrs]] of Object.entries(unary))
  for (const [T, N, lo, hi] of [[3, 67, -4, 4], [5, 4099, -6, 6], [2, 130, -40, 40], [2, 100, -1e-3, 1e-3], [2, 300, -30, -4]])
    add(`${op} ${JSON.stringify(attrs)} T=${T} N=${N} x in [${lo}, ${hi}]`, async (c, r) => {
      const x = f32s(T * N, lo, hi, r);
      const a = new Arena(c, r);
      const tx = a.add('f32', [T, N], x.bytes), o = a.add('f32', [T, N]);
      await a.upload();
      await c.run({ op, attrs, inputs: [tx], outputs: [o] });
      return check(this, a, o, Array.from(x.values, fn), floor(cf, 1));
    });

const binary = {
  add: [(a, b) => a + b, 4, false], mul: [(a, b) => a * b, 4, false],
  swiglu: [(g, u) => (g / (1 + Math.exp(-g))) * u, 16, false],
  bias: [(x, b) => x + b, 4, 'row'], sigmoid_gate: [(x, g) => x * sigmoid(g), 4, 'gate'],
};
for (const [op, [fn, cf, shape]] of Object.entries(binary))
  for (const [T, N, s] of [[3, 67, 2], [5, 4099, 2], [7, 1, 1], [300, 1000, 8]])
    add(`${op} T=${T} N=${N}`, async (c, r) => {
      const x = f32s(T * N, -s, s, r);
      const bn = shape === 'row' ? N : shape === 'gate' ? T : T * N;
      const b = f32s(bn, shape === 'gate' ? -20 : -s, shape === 'gate' ? 20 : s, r);
      if (shape === 'gate' && T >= 6) [-100, -20, 0, 3, 20, 100].forEach((g, i) => { b.values[i] = g; new Float32Array(b.bytes.buffer)[i] = g; });
      const a = new Arena(c, r);
      const tx = a.add('f32', [T, N], x.bytes);
      const tb = a.add('f32', shape === 'row' ? [N] : shape === 'gate' ? [T, 1] : [T, N], b.bytes);
      const o = a.add('f32', [T, N]);
      await a.upload();
      await c.run({ op, attrs: {}, inputs: [tx, tb], outputs: [o] });
      const want = Array.from(x.values, (v, i) => fn(v, shape === 'row' ? b.values[i % N] : shape === 'gate' ? b.values[Math.floor(i / N)] : b.values[i]));
      return check(this, a, o, want, floor(cf, 1));
    });

for (const [T, N, lo, hi, eps] of [[3, 67, -1, 1, 1e-5], [2, 4099, -1, 1, 1e-6], [3, 300, 999, 1001, 1e-5], [4, 96, -3e-3, 3e-3, 1e-5]])
  addEach('rows', `layernorm T=${T} N=${N} x in [${lo}, ${hi}]`, async function (c, r) {
    const x = f32s(T * N, lo, hi, r), w = f32s(N, -2, 2, r);
    const a = new Arena(c, r);
    const tx = a.add('f32', [T, N], x.bytes), tw = a.add('f32', [N], w.bytes), o = a.add('f32', [T, N]);
    await a.upload();
    await c.run({ op: 'layernorm', attrs: { eps }, inputs: [tx, tw], outputs: [o] });
    // Rows far from 0 carry the f32 rounding of the mean (the catalog's note): ~mean/spread.
    const spread = hi - lo, meanMag = Math.abs(lo + hi) / 2;
    return check(this, a, o, ref.layernorm(x.values, w.values, T, N, eps), floor(4, N) * Math.max(1, 2 * meanMag / spread));
  });

// moe_route: logits uniform in [-s, s]; 'grid' rounds them to multiples of 0.5 (ties at the
// k-th place in most rows), with row 0 all equal and row 1 holding three equal maxima;
// 'ulp' makes neighbours one f32 ulp apart (they round to one p, the ranking must not).
for (const [label, T, E, k, norm, s, kind] of [
  ['Mixtral: E=8 top 2 normalized', 7, 8, 2, 1, 3], ['Qwen2-MoE: E=60 top 4', 3, 60, 4, 0, 3],
  ['decode: E=67 top 6 normalized', 1, 67, 6, 1, 3], ['k = E', 2, 19, 19, 1, 3], ['k = 1', 5, 16, 1, 0, 3],
  ['logits of +-80', 4, 8, 2, 0, 80], ['E=1', 3, 1, 1, 1, 3], ['300 tokens E=128 top 8', 300, 128, 8, 1, 4],
  ['ties: the lower expert wins', 6, 16, 2, 0, 2, 'grid'], ['ties normalized', 6, 16, 2, 1, 2, 'grid'],
  ['ties top 5', 9, 24, 5, 1, 2, 'grid'], ['one ulp apart', 4, 12, 3, 0, 1, 'ulp']])
  add(`moe_route ${label} T=${T} E=${E} k=${k} norm=${norm}`, async (c, r) => {
    const l = f32s(T * E, -s, s, r);
    const f = new Float32Array(l.bytes.buffer);
    if (kind === 'grid') {
      for (let i = 0; i < T * E; ++i) f[i] = Math.round(f[i] * 2) / 2;
      for (let e = 0; e < E; ++e) { f[e] = 0.25; f[E + e] = -1; }
      f[E + 5] = f[E + 9] = f[E + 12] = 1.5;
    } else if (kind === 'ulp') {
      const u = new Uint32Array(f.buffer);
      for (let i = 0; i < T * E; ++i) { f[i] = 0.75; u[i] += (i * 7) % 5; }
    }
    l.values = Float64Array.from(f);
    const a = new Arena(c, r);
    const tl = a.add('f32', [T, E], l.bytes), o = a.add('f32', [T, E]);
    await a.upload();
    await c.run({ op: 'moe_route', attrs: { k, norm }, inputs: [tl], outputs: [o] });
    const want = ref.moe_route(l.values, T, E, k, norm);
    const got = await a.readF32(o);
    for (let i = 0; i < T * E; ++i)
      if ((want[i] === 0) !== (got[i] === 0))
        throw new Error(`token ${Math.floor(i / E)} expert ${i % E}: expected ${want[i]}, got ${got[i]} (a different choice)`);
    return check(this, a, o, want, floor(4, E));
  });

// [T, E] route weights: k experts per row chosen at random with weights in [0.05, 1].
function sparseRoute(T, E, k, r) {
  const v = new Float32Array(T * E);
  for (let t = 0; t < T; ++t) {
    const order = [...Array(E).keys()];
    for (let i = 0; i < k; ++i) { const j = i + r.int(0, E - i); [order[i], order[j]] = [order[j], order[i]]; }
    for (let i = 0; i < k; ++i) v[t * E + order[i]] = r.uniform(0.05, 1);
  }
  return { values: Float64Array.from(v), bytes: new Uint8Array(v.buffer) };
}

// moe_ffn: the catalog's examples. 'poison': expert 0 chosen by every token, expert E-1 by
// none and holding inf in its weights (a kernel that computes it gets NaN). 'dense': every
// route weight non-zero. actBytes: a smaller scratch, so that the tokens go in chunks.
for (const dtype of ['f32', 'f16', 'bf16'])
  for (const [label, T, D, H, E, k, xs, kind, actBytes] of [
    ['Mixtral-like: E=8 top 2', 5, 64, 48, 8, 2, 1], ['D=67 H=43 tails, E=4 top 2', 3, 67, 43, 4, 2, 1],
    ['decode: E=16 top 4 D=128 H=96', 1, 128, 96, 16, 4, 1], ['9 tokens D=256 H=520', 9, 256, 520, 6, 2, 1],
    ['unchosen expert holding inf', 4, 40, 24, 5, 2, 1, 'poison'], ['dense route', 3, 32, 20, 3, 3, 1, 'dense'],
    ['large activations', 2, 48, 40, 4, 2, 30], ['E=1 H=1', 3, 5, 1, 1, 1, 1],
    ['11 tokens in chunks of 3', 11, 24, 20, 6, 2, 1, null, 3 * 6 * 20 * 4]])
    add(`moe_ffn ${dtype} ${label} T=${T} D=${D} H=${H} E=${E}`, async (c, r) => {
      const wd = 1 / Math.sqrt(D), wh = 1 / Math.sqrt(H);
      const x = f32s(T * D, -xs, xs, r);
      let route;
      if (kind === 'dense') route = f32s(T * E, 0.1, 1, r);
      else route = sparseRoute(T, E, k, r);
      if (kind === 'poison') {
        const v = new Float32Array(route.bytes.buffer);
        for (let t = 0; t < T; ++t) {
          const row = v.subarray(t * E, (t + 1) * E);
          if (row[E - 1] !== 0) { const z = row.findIndex((q, e) => q === 0 && e > 0); [row[E - 1], row[z]] = [row[z], row[E - 1]]; }
          if (row[0] === 0) { const nz = row.findIndex((q) => q !== 0); [row[0], row[nz]] = [row[nz], row[0]]; }
        }
        route.values = Float64Array.from(v);
      }
      const gate = weights(dtype, E * H * D, -2 * wd, 2 * wd, r), up = weights(dtype, E * H * D, -2 * wd, 2 * wd, r);
      const down = weights(dtype, E * D * H, -2 * wh, 2 * wh, r);
      if (kind === 'poison')
        for (const w of [gate, up, down]) {
          const per = (H * D), inf = dtype === 'f32' ? null : dtype === 'f16' ? 0x7c00 : 0x7f80;
          const view = dtype === 'f32' ? new Float32Array(w.bytes.buffer) : new Uint16Array(w.bytes.buffer);
          for (let j = (E - 1) * per; j < E * per; j += 7) { view[j] = dtype === 'f32' ? Infinity : inf; w.values[j] = Infinity; }
        }
      const a = new Arena(c, r);
      const tx = a.add('f32', [T, D], x.bytes), tr = a.add('f32', [T, E], route.bytes);
      const tg = a.add(dtype, [E, H, D], gate.bytes), tu = a.add(dtype, [E, H, D], up.bytes);
      const td = a.add(dtype, [E, D, H], down.bytes), o = a.add('f32', [T, D]);
      await a.upload();
      if (actBytes) KERNEL_CHOICE.moeActBytes = actBytes;
      try {
        await c.run({ op: 'moe_ffn', attrs: {}, inputs: [tx, tr, tg, tu, td], outputs: [o] });
        await c.sync();
      } finally { KERNEL_CHOICE.moeActBytes = 64 * 1024 * 1024; }
      return check(this, a, o, ref.moe_ffn(x.values, route.values, gate.values, up.values, down.values, T, D, H, E), floor(8, Math.max(D, H)));
    });

// moe_route then moe_ffn, the route staying on the device.
for (const [T, D, H, E, k, norm] of [[6, 32, 24, 8, 2, 1], [2, 40, 16, 60, 4, 0]])
  add(`moe_route then moe_ffn T=${T} E=${E} k=${k} norm=${norm}`, async (c, r) => {
    const l = f32s(T * E, -3, 3, r), x = f32s(T * D, -1, 1, r);
    const gate = weights('f16', E * H * D, -0.3, 0.3, r), up = weights('f16', E * H * D, -0.3, 0.3, r);
    const down = weights('f16', E * D * H, -0.3, 0.3, r);
    const a = new Arena(c, r);
    const tl = a.add('f32', [T, E], l.bytes), tr = a.add('f32', [T, E]), tx = a.add('f32', [T, D], x.bytes);
    const tg = a.add('f16', [E, H, D], gate.bytes), tu = a.add('f16', [E, H, D], up.bytes);
    const td = a.add('f16', [E, D, H], down.bytes), o = a.add('f32', [T, D]);
    await a.upload();
    await c.run({ op: 'moe_route', attrs: { k, norm }, inputs: [tl], outputs: [tr] });
    await c.run({ op: 'moe_ffn', attrs: {}, inputs: [tx, tr, tg, tu, td], outputs: [o] });
    const route = ref.moe_route(l.values, T, E, k, norm);
    return check(this, a, o, ref.moe_ffn(x.values, route, gate.values, up.values, down.values, T, D, H, E), floor(8, Math.max(D, H) * E));
  });
add('moe_ffn with up of another dtype is refused', async (c, r) => {
  const a = new Arena(c, r);
  const tx = a.add('f32', [2, 8]), tr = a.add('f32', [2, 3]), tg = a.add('f16', [3, 4, 8]), tu = a.add('f32', [3, 4, 8]);
  const td = a.add('f16', [3, 8, 4]), o = a.add('f32', [2, 8]);
  await a.upload();
  try { await c.run({ op: 'moe_ffn', attrs: {}, inputs: [tx, tr, tg, tu, td], outputs: [o] }); } catch (e) {
    if (/moe_ffn: up must have gate's dtype f16, got f32 \[3, 4, 8\]/.test(e.message)) return 'refused';
    throw e;
  }
  throw new Error('accepted');
});
add('moe_route with k > E is refused', async (c, r) => {
  const a = new Arena(c, r);
  const tl = a.add('f32', [2, 4]), o = a.add('f32', [2, 4]);
  await a.upload();
  try { await c.run({ op: 'moe_route', attrs: { k: 5, norm: 1 }, inputs: [tl], outputs: [o] }); } catch (e) {
    if (/moe_route: k must be 1\.\.4 \(the experts of logits f32 \[2, 4\]\), got 5/.test(e.message)) return 'refused';
    throw e;
  }
  throw new Error('accepted');
});

// Errors reported, not crashes: a bad token id, a cache position out of range. The kernels
// check on the GPU, so the RUN is accepted and the next SYNC (or READ) is the ERROR; the one
// after it is clean again.
async function failsAtSync(c, call, pattern) {
  await c.run(call);
  try { await c.sync(); } catch (e) {
    if (!pattern.test(e.message)) throw e;
    await c.sync();
    return 'refused';
  }
  throw new Error('no error');
}
add('embedding id outside the vocabulary is an ERROR', async (c, r) => {
  const a = new Arena(c, r);
  const t0 = a.add('f32', [4, 8], f32s(32, -1, 1, r).bytes), t1 = a.add('i32', [2], i32s([1, 4]).bytes), o = a.add('f32', [2, 8]);
  await a.upload();
  return failsAtSync(c, { op: 'embedding', attrs: {}, inputs: [t0, t1], outputs: [o] }, /token id 4 outside the vocabulary of 4/);
});
add('a negative embedding id is an ERROR', async (c, r) => {
  const a = new Arena(c, r);
  const t0 = a.add('f32', [4, 8], f32s(32, -1, 1, r).bytes), t1 = a.add('i32', [2], i32s([-3, 0]).bytes), o = a.add('f32', [2, 8]);
  await a.upload();
  return failsAtSync(c, { op: 'embedding', attrs: {}, inputs: [t0, t1], outputs: [o] }, /token id -3 outside the vocabulary of 4/);
});
add('kv_store rows past the cache are an ERROR', async (c, r) => {
  const a = new Arena(c, r);
  const kc = a.add('f32', [6, 4]), vc = a.add('f32', [6, 4]);
  const k = a.add('f32', [2, 4], f32s(8, -1, 1, r).bytes), v = a.add('f32', [2, 4], f32s(8, -1, 1, r).bytes);
  const pos = a.add('i32', [1], i32s([5]).bytes);
  await a.upload();
  return failsAtSync(c, { op: 'kv_store', attrs: {}, inputs: [kc, vc, k, v, pos], outputs: [kc, vc] },
    /kv_store: rows 5\.\.7 do not fit a cache of 6/);
});

// ---- main -----------------------------------------------------------------------------------
async function main() {
  let g;
  try {
    g = await openNodeGpu();
  } catch (e) {
    console.log(`skip: ${e.message}`);
    process.exit(SKIP);
  }
  const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : null;
  console.log(`adapter: ${g.description} (${g.runtime}); shader-f16: ${g.device.features.has('shader-f16')}`);
  const modes = [false];
  if (g.device.features.has('shader-f16')) modes.push(true);
  else console.log('note: the adapter has no shader-f16; f16 weights run on the u32 unpacking path only');
  let failed = 0, passed = 0;
  for (const native16 of modes) {
    const device = new Device(g.device, { adapter: g.description, runtime: g.runtime, native16 });
    const client = new Client(device);
    await client.hello();
    let seed = 1;
    for (const cs of cases) {
      if (only && !cs.label.includes(only)) continue;
      const label = `${cs.label}${native16 ? ' [shader-f16]' : ''}`;
      try {
        const note = await cs.fn.call(label, client, rng(seed++));
        passed++;
        console.log(`ok   ${label}: ${note}`);
      } catch (e) {
        failed++;
        console.log(`FAIL ${label}: ${e.message}`);
      }
      device.sessionEnd();
      device.sessionStart();
      await client.hello();
    }
  }
  console.log(`${passed} passed, ${failed} failed`);
  g.device.destroy();
  process.exit(failed ? 1 : 0);
}
main();
