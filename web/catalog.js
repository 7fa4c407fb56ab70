// The TapML op catalog (src/ops/*.cpp) as far as this device needs it: for each op its
// inputs, outputs, attributes, input dtypes, in-place outputs and shape rules, so that a call
// is checked here with the catalog's messages before a kernel sees it. validateCall() throws
// an Error naming the problem ("matmul: x f32 [3, 64] and w f32 [48, 32] disagree on K").

import { describe } from './protocol.js';

const WEIGHT = ['f32', 'f16', 'bf16'];
const MATRIX_WEIGHT = ['f32', 'f16', 'bf16', 'q4_0', 'q4_1', 'q5_0', 'q5_1', 'q8_0', 'q2_k',
  'q3_k', 'q4_k', 'q5_k', 'q6_k'];
const F32 = ['f32'];
const I32 = ['i32'];

class CatalogError extends Error {}
function expect(ok, op, what) { if (!ok) throw new CatalogError(`${op}: ${what}`); }
const sameShape = (a, b) => a.length === b.length && a.every((d, i) => d === b[i]);
const t = (dtype, shape) => ({ dtype, shape });

function matrix(x, op, name) {
  expect(x.shape.length === 2 && x.shape[0] >= 0 && x.shape[1] > 0, op, `${name} must be a matrix, got ${describe(x)}`);
}
function get(a, name) {
  if (!a.has(name)) throw new CatalogError(`missing attribute '${name}'`);
  return a.get(name);
}
function getInt(a, name) {
  const v = get(a, name);
  if (!(Number.isFinite(v) && v === Math.floor(v) && Math.abs(v) < 9e15))
    throw new CatalogError(`attribute '${name}' must be an integer`);
  return v;
}
function positive(a, name, op) {
  const v = getInt(a, name);
  expect(v > 0, op, `attribute ${name} must be positive`);
  return v;
}
function sameAsX(op, names) {
  return (i) => { matrix(i[0], op, names[0]); expect(sameShape(i[1].shape, i[0].shape), op,
    `${names[0]} ${describe(i[0])} and ${names[1]} ${describe(i[1])} differ in shape`); return [i[0]]; };
}
function rowVector(op, bname) {
  return (i) => { matrix(i[0], op, 'x'); expect(sameShape(i[1].shape, [i[0].shape[1]]), op,
    `${bname} ${describe(i[1])} does not fit x ${describe(i[0])}`); return [i[0]]; };
}
function eps(a, op) {
  const e = get(a, 'eps');
  expect(e >= 0 && Number.isFinite(e), op, 'eps must be finite and non-negative');
}

export const CATALOG = {
  embedding: { inputs: ['table', 'ids'], outputs: ['out'], attrs: [], dtypes: [MATRIX_WEIGHT, I32], inplace: [-1],
    infer(i) {
      matrix(i[0], 'embedding', 'table');
      expect(i[1].shape.length === 1, 'embedding', `ids must be [T], got ${describe(i[1])}`);
      return [t('f32', [i[1].shape[0], i[0].shape[1]])];
    } },
  rmsnorm: { inputs: ['x', 'weight'], outputs: ['out'], attrs: ['eps'], dtypes: [F32, WEIGHT], inplace: [-1],
    infer(i, a) {
      matrix(i[0], 'rmsnorm', 'x');
      expect(sameShape(i[1].shape, [i[0].shape[1]]), 'rmsnorm', `weight ${describe(i[1])} does not fit x ${describe(i[0])}`);
      eps(a, 'rmsnorm');
      return [i[0]];
    } },
  matmul: { inputs: ['x', 'w'], outputs: ['out'], attrs: [], dtypes: [F32, MATRIX_WEIGHT], inplace: [-1],
    infer(i) {
      matrix(i[0], 'matmul', 'x'); matrix(i[1], 'matmul', 'w');
      expect(i[0].shape[1] === i[1].shape[1], 'matmul', `x ${describe(i[0])} and w ${describe(i[1])} disagree on K`);
      return [t('f32', [i[0].shape[0], i[1].shape[0]])];
    } },
  rope: { inputs: ['x', 'pos', 'freq_factors'], optionalInputs: 1, outputs: ['out'],
    attrs: ['n_heads', 'head_dim', 'rope_dim', 'base', 'pairing'], dtypes: [F32, I32, F32], inplace: [-1],
    infer(i, a) {
      const op = 'rope';
      matrix(i[0], op, 'x');
      expect(sameShape(i[1].shape, [i[0].shape[0]]), op, `pos must be [T] matching x, got ${describe(i[1])}`);
      const h = positive(a, 'n_heads', op), hd = positive(a, 'head_dim', op), rd = positive(a, 'rope_dim', op);
      expect(h * hd === i[0].shape[1], op, `n_heads*head_dim != width of x ${describe(i[0])}`);
      expect(rd <= hd && rd % 2 === 0, op, 'rope_dim must be even and <= head_dim');
      const p = getInt(a, 'pairing');
      expect(p === 0 || p === 1, op, 'pairing must be 0 (adjacent) or 1 (neox)');
      expect(get(a, 'base') > 0, op, 'base must be positive');
      if (i.length > 2) expect(sameShape(i[2].shape, [rd / 2]), op,
        `freq_factors must be [rope_dim/2] = [${rd / 2}], got ${describe(i[2])}`);
      return [i[0]];
    } },
  kv_store: { inputs: ['k_cache', 'v_cache', 'k', 'v', 'pos'], outputs: ['k_cache', 'v_cache'], attrs: [],
    dtypes: [F32, F32, F32, F32, I32], inplace: [0, 1],
    infer(i) {
      const op = 'kv_store';
      for (let n = 0; n < 4; ++n) matrix(i[n], op, n < 2 ? 'cache' : 'k/v');
      expect(sameShape(i[0].shape, i[1].shape), op, 'k_cache and v_cache differ');
      expect(sameShape(i[2].shape, i[3].shape), op, 'k and v differ');
      expect(i[2].shape[1] === i[0].shape[1], op, `k ${describe(i[2])} does not fit cache ${describe(i[0])}`);
      expect(i[2].shape[0] <= i[0].shape[0], op, 'more rows than the cache holds');
      expect(sameShape(i[4].shape, [1]), op, `pos must be [1], got ${describe(i[4])}`);
      return [i[0], i[1]];
    } },
  attention: { inputs: ['q', 'k', 'v'], outputs: ['out'],
    attrs: ['n_heads', 'n_kv_heads', 'head_dim', 'scale', 'window', 'softcap'], optionalAttrs: 2,
    dtypes: [F32, F32, F32], inplace: [-1],
    infer(i, a) {
      const op = 'attention';
      for (let n = 0; n < 3; ++n) matrix(i[n], op, n === 0 ? 'q' : 'k/v');
      const h = positive(a, 'n_heads', op), kv = positive(a, 'n_kv_heads', op), hd = positive(a, 'head_dim', op);
      expect(h % kv === 0, op, 'n_heads must be a multiple of n_kv_heads');
      expect(i[0].shape[1] === h * hd, op, `q ${describe(i[0])} is not [T, n_heads*head_dim]`);
      expect(sameShape(i[1].shape, i[2].shape), op, 'k and v differ');
      expect(i[1].shape[1] === kv * hd, op, `k ${describe(i[1])} is not [P, n_kv_heads*head_dim]`);
      expect(i[1].shape[0] >= i[0].shape[0], op, 'fewer keys than query rows');
      expect(Number.isFinite(get(a, 'scale')), op, 'scale must be finite');
      const w = a.has('window') ? a.get('window') : 0;
      expect(w >= 0 && w === Math.floor(w) && w < 9e15, op, 'window must be a non-negative integer (0: none)');
      const c = a.has('softcap') ? a.get('softcap') : 0;
      expect(c >= 0 && Number.isFinite(c), op, 'softcap must be finite and non-negative (0: none)');
      return [i[0]];
    } },
  swiglu: { inputs: ['gate', 'up'], outputs: ['out'], attrs: [], dtypes: [F32, F32], inplace: [-1],
    infer(i) {
      matrix(i[0], 'swiglu', 'gate');
      expect(sameShape(i[0].shape, i[1].shape), 'swiglu', `shapes differ: ${describe(i[0])} vs ${describe(i[1])}`);
      return [i[0]];
    } },
  add: { inputs: ['a', 'b'], outputs: ['out'], attrs: [], dtypes: [F32, F32], inplace: [-1],
    infer(i) {
      matrix(i[0], 'add', 'a');
      expect(sameShape(i[0].shape, i[1].shape), 'add', `shapes differ: ${describe(i[0])} vs ${describe(i[1])}`);
      return [i[0]];
    } },
  gelu: { inputs: ['x'], outputs: ['out'], attrs: ['approx'], dtypes: [F32], inplace: [-1],
    infer(i, a) {
      matrix(i[0], 'gelu', 'x');
      const v = get(a, 'approx');
      expect(v === 0 || v === 1, 'gelu', 'approx must be 0 (erf) or 1 (tanh)');
      return [i[0]];
    } },
  layernorm: { inputs: ['x', 'weight'], outputs: ['out'], attrs: ['eps'], dtypes: [F32, F32], inplace: [-1],
    infer(i, a) {
      matrix(i[0], 'layernorm', 'x');
      expect(sameShape(i[1].shape, [i[0].shape[1]]), 'layernorm', `weight ${describe(i[1])} does not fit x ${describe(i[0])}`);
      eps(a, 'layernorm');
      return [i[0]];
    } },
  bias: { inputs: ['x', 'b'], outputs: ['out'], attrs: [], dtypes: [F32, F32], inplace: [-1], infer: rowVector('bias', 'b') },
  mul: { inputs: ['a', 'b'], outputs: ['out'], attrs: [], dtypes: [F32, F32], inplace: [-1], infer: sameAsX('mul', ['a', 'b']) },
  scale: { inputs: ['x'], outputs: ['out'], attrs: ['s'], dtypes: [F32], inplace: [-1],
    infer(i, a) { matrix(i[0], 'scale', 'x'); expect(Number.isFinite(get(a, 's')), 'scale', 's must be finite'); return [i[0]]; } },
  softcap: { inputs: ['x'], outputs: ['out'], attrs: ['cap'], dtypes: [F32], inplace: [-1],
    infer(i, a) {
      matrix(i[0], 'softcap', 'x');
      const c = get(a, 'cap');
      expect(c > 0 && Number.isFinite(c), 'softcap', 'cap must be positive and finite');
      return [i[0]];
    } },
  sigmoid_gate: { inputs: ['x', 'g'], outputs: ['out'], attrs: [], dtypes: [F32, F32], inplace: [-1],
    infer(i) {
      matrix(i[0], 'sigmoid_gate', 'x');
      expect(sameShape(i[1].shape, [i[0].shape[0], 1]), 'sigmoid_gate',
        `g must be [T, 1] with the rows of x ${describe(i[0])}, got ${describe(i[1])}`);
      return [i[0]];
    } },
  moe_route: { inputs: ['logits'], outputs: ['route'], attrs: ['k', 'norm'], dtypes: [F32], inplace: [-1],
    infer(i, a) {
      const op = 'moe_route';
      matrix(i[0], op, 'logits');
      const k = getInt(a, 'k'), E = i[0].shape[1];
      expect(k >= 1 && k <= E, op, `k must be 1..${E} (the experts of logits ${describe(i[0])}), got ${k}`);
      const norm = get(a, 'norm');
      expect(norm === 0 || norm === 1, op, 'norm must be 0 (p as is) or 1 (chosen p sum to 1)');
      return [i[0]];
    } },
  moe_ffn: { inputs: ['x', 'route', 'gate', 'up', 'down'], outputs: ['out'], attrs: [],
    dtypes: [F32, F32, WEIGHT, WEIGHT, WEIGHT], dtypeFollows: [-1, -1, -1, 2, 2], inplace: [-1],
    infer(i) {
      const op = 'moe_ffn';
      matrix(i[0], op, 'x');
      matrix(i[1], op, 'route');
      expect(i[1].shape[0] === i[0].shape[0], op, `route ${describe(i[1])} does not have the rows of x ${describe(i[0])}`);
      const D = i[0].shape[1], E = i[1].shape[1], g = i[2].shape;
      expect(g.length === 3 && g[0] === E && g[1] > 0 && g[2] === D, op,
        `gate must be [E, H, D] = [${E}, H, ${D}], got ${describe(i[2])}`);
      const H = g[1];
      expect(sameShape(i[3].shape, g), op, `up ${describe(i[3])} is not gate's shape [${g.join(', ')}]`);
      expect(sameShape(i[4].shape, [E, D, H]), op, `down must be [E, D, H] = [${E}, ${D}, ${H}], got ${describe(i[4])}`);
      return [i[0]];
    } },
};

function dtypeList(ts) {
  return ts.map((d, i) => (i === 0 ? '' : i + 1 === ts.length ? ' or ' : ', ') + d).join('');
}

function overlap(a, b, bytesOf) {
  if (a.buffer !== b.buffer) return false;
  const an = bytesOf(a), bn = bytesOf(b);
  if (an === 0 || bn === 0) return false;
  return a.offset < b.offset + bn && b.offset < a.offset + an;
}

// The catalog's check of a call (backend/backend.cpp validate): inputs, dtypes, attributes,
// the op's rules, the outputs it gives, and that only in-place outputs share bytes with an
// input. Throws an Error with the catalog's message. Ops missing from CATALOG are not
// checked here (the kernels refuse them).
export function validateCall(call, bytesOf) {
  const d = CATALOG[call.op];
  if (!d) return;
  const name = call.op;
  const least = d.inputs.length - (d.optionalInputs ?? 0), most = d.inputs.length;
  const n = call.inputs.length;
  expect(n >= least && n <= most, name, `takes ${least === most ? most : `${least} to ${most}`} inputs, got ${n}`);
  call.inputs.forEach((x, i) => {
    expect(d.dtypes[i].includes(x.dtype), name, `${d.inputs[i]} must be ${dtypeList(d.dtypes[i])}, got ${describe(x)}`);
    const lead = d.dtypeFollows ? d.dtypeFollows[i] : -1;
    if (lead >= 0) expect(x.dtype === call.inputs[lead].dtype, name,
      `${d.inputs[i]} must have ${d.inputs[lead]}'s dtype ${call.inputs[lead].dtype}, got ${describe(x)}`);
  });
  for (const k of call.attrs.keys()) expect(d.attrs.includes(k), name, `unknown attribute '${k}'`);
  let want;
  try {
    want = d.infer(call.inputs, call.attrs);
  } catch (e) {
    if (e instanceof CatalogError && !e.message.startsWith(name + ':')) throw new CatalogError(`${name}: ${e.message}`);
    throw e;
  }
  expect(call.outputs.length === want.length, name, `gives ${want.length} outputs, the call has ${call.outputs.length}`);
  call.outputs.forEach((o, i) => {
    expect(o.dtype === want[i].dtype && sameShape(o.shape, want[i].shape), name,
      `output ${d.outputs[i]} is ${describe(o)}, the op gives ${describe(want[i])}`);
  });
  call.outputs.forEach((o, i) => {
    const alias = d.inplace[i];
    if (alias >= 0) {
      const x = call.inputs[alias];
      expect(o.buffer === x.buffer && o.offset === x.offset, name,
        `in-place output ${d.outputs[i]} must name the bytes of input ${d.inputs[alias]}`);
      return;
    }
    call.inputs.forEach((x, j) => expect(!overlap(o, x, bytesOf), name,
      `output ${d.outputs[i]} overlaps input ${d.inputs[j]} (only in-place outputs may)`));
    for (let j = 0; j < i; ++j) expect(!overlap(o, call.outputs[j], bytesOf), name,
      `outputs ${d.outputs[j]} and ${d.outputs[i]} overlap`);
  });
}
