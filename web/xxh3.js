// XXH3-128 (xxHash 0.8, seed 0, default secret) in plain JS, as src/core/hash.h computes it
// with libxxhash: xxh3_128_hex(bytes) gives 32 lowercase hex digits, the high 64 bits first.
// Short inputs use BigInt; the long-input loop (over 240 bytes) works on 32-bit halves, which
// is what makes hashing megabytes of weights practical.

const M64 = (1n << 64n) - 1n;
const P32_1 = 0x9e3779b1n, P32_2 = 0x85ebca77n, P32_3 = 0xc2b2ae3dn;
const P64_1 = 0x9e3779b185ebca87n, P64_2 = 0xc2b2ae3d27d4eb4fn, P64_3 = 0x165667b19e3779f9n;
const P64_4 = 0x85ebca77c2b2ae63n, P64_5 = 0x27d4eb2f165667c5n;

const SECRET = new Uint8Array([
  0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c,
  0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f,
  0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21,
  0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c,
  0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb, 0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3,
  0x71, 0x64, 0x48, 0x97, 0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19, 0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8,
  0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9, 0xdc, 0xbb, 0xc7, 0xc7, 0x0b, 0x4f, 0x1d,
  0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31, 0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78, 0x73, 0x64,
  0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb, 0xc3, 0xc5, 0x81, 0xa0, 0xff, 0xfa, 0x13, 0x63, 0xeb,
  0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0, 0xda, 0x49, 0xd3, 0x16, 0x55, 0x26, 0x29, 0xd4, 0x68, 0x9e,
  0x2b, 0x16, 0xbe, 0x58, 0x7d, 0x47, 0xa1, 0xfc, 0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce,
  0x45, 0xcb, 0x3a, 0x8f, 0x95, 0x16, 0x04, 0x28, 0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e,
]);
const SECRET_VIEW = new DataView(SECRET.buffer);
const SECRET_SIZE = 192;
const STRIPE = 64;
const STRIPES_PER_BLOCK = (SECRET_SIZE - STRIPE) / 8; // 16
const BLOCK = STRIPE * STRIPES_PER_BLOCK; // 1024

const sec64 = (o) => SECRET_VIEW.getBigUint64(o, true);
const sec32 = (o) => BigInt(SECRET_VIEW.getUint32(o, true));

const mul = (a, b) => (a * b) & M64;
const xorshift = (h, s) => h ^ (h >> s);
function avalanche(h) { return xorshift(mul(xorshift(h, 37n), 0x165667919e3779f9n), 32n); }
function avalanche64(h) {
  h = mul(h ^ (h >> 33n), P64_2);
  h = mul(h ^ (h >> 29n), P64_3);
  return h ^ (h >> 32n);
}
function mult128(a, b) { const p = a * b; return [p & M64, p >> 64n]; }
function fold64(a, b) { const [lo, hi] = mult128(a, b); return lo ^ hi; }
function swap32(x) { return ((x & 0xffn) << 24n) | ((x & 0xff00n) << 8n) | ((x >> 8n) & 0xff00n) | (x >> 24n); }
function swap64(x) { return (swap32(x & 0xffffffffn) << 32n) | swap32(x >> 32n); }
function rotl32(x, r) { return ((x << r) | (x >> (32n - r))) & 0xffffffffn; }

function mix16(v, p, s) {
  return fold64(v.getBigUint64(p, true) ^ sec64(s), v.getBigUint64(p + 8, true) ^ sec64(s + 8));
}
function mix32(acc, v, p1, p2, s) {
  acc[0] = (acc[0] + mix16(v, p1, s)) & M64;
  acc[0] ^= (v.getBigUint64(p2, true) + v.getBigUint64(p2 + 8, true)) & M64;
  acc[1] = (acc[1] + mix16(v, p2, s + 16)) & M64;
  acc[1] ^= (v.getBigUint64(p1, true) + v.getBigUint64(p1 + 8, true)) & M64;
}
function finishMid(acc, len) {
  const lo = (acc[0] + acc[1]) & M64;
  const hi = (mul(acc[0], P64_1) + mul(acc[1], P64_4) + mul(BigInt(len), P64_2)) & M64;
  return [avalanche(lo), (-avalanche(hi)) & M64];
}

function hashShort(b, v, len) {
  if (len > 8) {
    const bitflipl = sec64(32) ^ sec64(40), bitfliph = sec64(48) ^ sec64(56);
    const inLo = v.getBigUint64(0, true);
    let inHi = v.getBigUint64(len - 8, true);
    let [lo, hi] = mult128(inLo ^ inHi ^ bitflipl, P64_1);
    lo = (lo + (BigInt(len - 1) << 54n)) & M64;
    inHi ^= bitfliph;
    hi = (hi + inHi + (inHi & 0xffffffffn) * (P32_2 - 1n)) & M64;
    lo ^= swap64(hi);
    let [hlo, hhi] = mult128(lo, P64_2);
    hhi = (hhi + mul(hi, P64_2)) & M64;
    return [avalanche(hlo), avalanche(hhi)];
  }
  if (len >= 4) {
    const in64 = BigInt(v.getUint32(0, true)) + (BigInt(v.getUint32(len - 4, true)) << 32n);
    const keyed = in64 ^ (sec64(16) ^ sec64(24));
    let [lo, hi] = mult128(keyed, (P64_1 + (BigInt(len) << 2n)) & M64);
    hi = (hi + (lo << 1n)) & M64;
    lo ^= hi >> 3n;
    lo = xorshift(lo, 35n);
    lo = mul(lo, 0x9fb21c651e98df25n);
    lo = xorshift(lo, 28n);
    return [lo, avalanche(hi)];
  }
  if (len > 0) {
    const c1 = BigInt(b[0]), c2 = BigInt(b[len >> 1]), c3 = BigInt(b[len - 1]);
    const combl = (c1 << 16n) | (c2 << 24n) | c3 | (BigInt(len) << 8n);
    const combh = rotl32(swap32(combl), 13n);
    return [avalanche64(combl ^ (sec32(0) ^ sec32(4))), avalanche64(combh ^ (sec32(8) ^ sec32(12)))];
  }
  return [avalanche64(sec64(64) ^ sec64(72)), avalanche64(sec64(80) ^ sec64(88))];
}

function hashMid(v, len) {
  const acc = [mul(BigInt(len), P64_1), 0n];
  if (len <= 128) {
    if (len > 32) {
      if (len > 64) {
        if (len > 96) mix32(acc, v, 48, len - 64, 96);
        mix32(acc, v, 32, len - 48, 64);
      }
      mix32(acc, v, 16, len - 32, 32);
    }
    mix32(acc, v, 0, len - 16, 0);
    return finishMid(acc, len);
  }
  const rounds = Math.floor(len / 32);
  for (let i = 0; i < 4; ++i) mix32(acc, v, 32 * i, 32 * i + 16, 32 * i);
  acc[0] = avalanche(acc[0]);
  acc[1] = avalanche(acc[1]);
  for (let i = 4; i < rounds; ++i) mix32(acc, v, 32 * i, 32 * i + 16, 3 + 32 * (i - 4));
  mix32(acc, v, len - 16, len - 32, 136 - 17 - 16);
  return finishMid(acc, len);
}

// ---- long inputs: 8 accumulator lanes as (lo, hi) 32-bit halves --------------------------------

const SECRET_WORDS = new Uint32Array(SECRET_SIZE / 4);
for (let i = 0; i < SECRET_WORDS.length; ++i) SECRET_WORDS[i] = SECRET_VIEW.getUint32(i * 4, true);
// The secret at byte offsets 8n and 121 (the last stripe's), as 32-bit words.
function secretWordsAt(byteOffset) {
  const w = new Uint32Array(16);
  for (let i = 0; i < 16; ++i) w[i] = SECRET_VIEW.getUint32(byteOffset + 4 * i, true);
  return w;
}
const STRIPE_KEYS = Array.from({ length: STRIPES_PER_BLOCK }, (_, n) => secretWordsAt(8 * n));
const LAST_KEY = secretWordsAt(SECRET_SIZE - STRIPE - 7);

const TWO32 = 4294967296;

// acc[2i], acc[2i+1]: lane i's low and high halves. w: the input as 32-bit words, at word p.
function accumulate512(acc, w, p, key) {
  for (let i = 0; i < 8; ++i) {
    const dlo = w[p + 2 * i], dhi = w[p + 2 * i + 1];
    const klo = (dlo ^ key[2 * i]) >>> 0, khi = (dhi ^ key[2 * i + 1]) >>> 0;
    // acc[i ^ 1] += data
    const j = (i ^ 1) * 2;
    let s = acc[j] + dlo;
    acc[j] = s >>> 0;
    acc[j + 1] = (acc[j + 1] + dhi + (s >= TWO32 ? 1 : 0)) >>> 0;
    // acc[i] += klo * khi (32 x 32 -> 64)
    const a0 = klo & 0xffff, a1 = klo >>> 16, b0 = khi & 0xffff, b1 = khi >>> 16;
    const m1 = a1 * b0, m2 = a0 * b1;
    const t = a0 * b0 + (m1 % 65536) * 65536 + (m2 % 65536) * 65536;
    const plo = t % TWO32;
    const phi = a1 * b1 + Math.floor(m1 / 65536) + Math.floor(m2 / 65536) + Math.floor(t / TWO32);
    const k = 2 * i;
    s = acc[k] + plo;
    acc[k] = s >>> 0;
    acc[k + 1] = (acc[k + 1] + phi + (s >= TWO32 ? 1 : 0)) >>> 0;
  }
}

function scramble(acc) {
  for (let i = 0; i < 8; ++i) {
    let a = (BigInt(acc[2 * i + 1]) << 32n) | BigInt(acc[2 * i]);
    a = xorshift(a, 47n) ^ sec64(SECRET_SIZE - STRIPE + 8 * i);
    a = mul(a, P32_1);
    acc[2 * i] = Number(a & 0xffffffffn);
    acc[2 * i + 1] = Number(a >> 32n);
  }
}

function hashLong(b, len) {
  // Whole 32-bit words: copy when the bytes do not start on a 4-byte boundary.
  let bytes = b;
  if (b.byteOffset % 4 !== 0) bytes = b.slice();
  const w = new Uint32Array(bytes.buffer, bytes.byteOffset, Math.floor(len / 4));
  const init = [P32_3, P64_1, P64_2, P64_3, P64_4, P32_2, P64_5, P32_1];
  const acc = new Float64Array(16);
  init.forEach((v, i) => { acc[2 * i] = Number(v & 0xffffffffn); acc[2 * i + 1] = Number(v >> 32n); });
  const blocks = Math.floor((len - 1) / BLOCK);
  for (let n = 0; n < blocks; ++n) {
    const base = (n * BLOCK) / 4;
    for (let s = 0; s < STRIPES_PER_BLOCK; ++s) accumulate512(acc, w, base + s * 16, STRIPE_KEYS[s]);
    scramble(acc);
  }
  const stripes = Math.floor((len - 1 - BLOCK * blocks) / STRIPE);
  const base = (blocks * BLOCK) / 4;
  for (let s = 0; s < stripes; ++s) accumulate512(acc, w, base + s * 16, STRIPE_KEYS[s]);
  // The last stripe ends at the input's end, which need not be word-aligned.
  const last = new Uint32Array(16);
  const lv = new DataView(bytes.buffer, bytes.byteOffset + len - STRIPE, STRIPE);
  for (let i = 0; i < 16; ++i) last[i] = lv.getUint32(4 * i, true);
  accumulate512(acc, last, 0, LAST_KEY);
  const lanes = [];
  for (let i = 0; i < 8; ++i) lanes.push((BigInt(acc[2 * i + 1]) << 32n) | BigInt(acc[2 * i]));
  const merge = (s, start) => {
    let r = start;
    for (let i = 0; i < 4; ++i) r = (r + fold64(lanes[2 * i] ^ sec64(s + 16 * i), lanes[2 * i + 1] ^ sec64(s + 16 * i + 8))) & M64;
    return avalanche(r);
  };
  const lo = merge(11, mul(BigInt(len), P64_1));
  const hi = merge(SECRET_SIZE - STRIPE - 11, (~mul(BigInt(len), P64_2)) & M64);
  return [lo, hi];
}

// [low64, high64] as BigInts.
export function xxh3_128(bytes) {
  const b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const len = b.length;
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (len <= 16) return hashShort(b, v, len);
  if (len <= 240) return hashMid(v, len);
  return hashLong(b, len);
}

export function xxh3_128_hex(bytes) {
  const [lo, hi] = xxh3_128(bytes);
  return hi.toString(16).padStart(16, '0') + lo.toString(16).padStart(16, '0');
}
