// Test helpers for the WebGPU device: a client that drives Device.handle() with encoded
// frames, seeded random data, f16/bf16 conversions, and the oracle's error measure
// (docs/oracle.md: E = max |a - e| / max |e|).
import * as P from '../protocol.js';

export const SKIP = 77;

export function rng(seed) {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, uniform: (lo, hi) => lo + (hi - lo) * next(), int: (lo, hi) => lo + Math.floor((hi - lo) * next()) };
}

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

// f32 -> f16 bits, round to nearest even (subnormals and overflow to inf included).
export function f32ToF16(v) {
  f32buf[0] = v;
  const x = u32buf[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1), half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
  return sign | h;
}
export function f16ToF32(h) {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}
export function f32ToBf16(v) {
  f32buf[0] = v;
  const x = u32buf[0];
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}
export function bf16ToF32(h) { u32buf[0] = h << 16; return f32buf[0]; }

// A weight tensor's values as the device reads them, and its bytes.
export function weights(dtype, n, lo, hi, r) {
  const values = new Float64Array(n);
  let bytes;
  if (dtype === 'f32') {
    const a = new Float32Array(n);
    for (let i = 0; i < n; ++i) values[i] = a[i] = r.uniform(lo, hi);
    bytes = new Uint8Array(a.buffer);
  } else {
    const a = new Uint16Array(n);
    for (let i = 0; i < n; ++i) {
      const v = r.uniform(lo, hi);
      a[i] = dtype === 'f16' ? f32ToF16(v) : f32ToBf16(v);
      values[i] = dtype === 'f16' ? f16ToF32(a[i]) : bf16ToF32(a[i]);
    }
    bytes = new Uint8Array(a.buffer);
  }
  return { values, bytes };
}
export function f32s(n, lo, hi, r) { return weights('f32', n, lo, hi, r); }
export function i32s(list) { const a = Int32Array.from(list); return { values: a, bytes: new Uint8Array(a.buffer) }; }

// E of docs/oracle.md, and whether every element is bit-equal.
export function measure(expected, actual) {
  let scale = 0, err = 0, worst = -1;
  for (let i = 0; i < expected.length; ++i) scale = Math.max(scale, Math.abs(expected[i]));
  scale = scale || 1e-30;
  for (let i = 0; i < expected.length; ++i) {
    const d = Math.abs(actual[i] - expected[i]);
    if (!(d <= err)) { err = Number.isNaN(d) ? Infinity : d; worst = i; }
  }
  return { E: err / scale, worst };
}

export class Client {
  constructor(device) { this.device = device; }
  async request(m) {
    const reply = P.decodeReply(await this.device.handle(P.encodeRequest(m)));
    return reply;
  }
  async ok(m) {
    const r = await this.request(m);
    if (r.type === P.MsgType.ERROR) throw new Error(`${P.msgName(m.type)}: ${r.text}`);
    return r;
  }
  async hello() { return this.ok({ type: P.MsgType.HELLO, client: 'test' }); }
  async alloc(size) { return (await this.ok({ type: P.MsgType.ALLOC, size })).id; }
  async write(id, offset, data) { return this.ok({ type: P.MsgType.WRITE, id, offset, data }); }
  async read(id, offset, size) { return (await this.ok({ type: P.MsgType.READ, id, offset, size })).data; }
  async run(call) { return this.ok({ type: P.MsgType.RUN, call }); }
  async supports(call) { return this.ok({ type: P.MsgType.SUPPORTS, call }); }
  async sync() { return this.ok({ type: P.MsgType.SYNC }); }
  async free(id) { return this.ok({ type: P.MsgType.FREE, id }); }
}

// Lays tensors out in one buffer at awkward offsets (each start moved by a few elements past
// the previous end), writes them, and returns tensor descriptors for a call.
export class Arena {
  constructor(client, r) { this.client = client; this.r = r; this.items = []; this.size = 0; }
  add(dtype, shape, bytes) {
    const esize = dtype === 'f16' || dtype === 'bf16' ? 2 : 4;
    const gap = esize * (1 + this.r.int(0, 5));
    const offset = Math.ceil(this.size / esize) * esize + gap;
    const n = shape.reduce((a, b) => a * b, 1);
    const t = { buffer: 0, offset, dtype, shape, bytes: bytes ?? new Uint8Array(n * esize) };
    this.size = offset + n * esize;
    this.items.push(t);
    return t;
  }
  async upload() {
    const id = await this.client.alloc(this.size + 64);
    // Guard bytes everywhere first, so that stray writes show.
    await this.client.write(id, 0, new Uint8Array(this.size + 64).fill(0x5a));
    for (const t of this.items) { t.buffer = id; await this.client.write(id, t.offset, t.bytes); }
    this.id = id;
    return id;
  }
  async readF32(t) {
    const b = await this.client.read(this.id, t.offset, t.bytes.length);
    return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
  }
  async readAll() { return this.client.read(this.id, 0, this.size + 64); }
}
