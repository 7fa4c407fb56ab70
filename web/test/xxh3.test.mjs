// The JS XXH3-128 (web/xxh3.js) against vectors printed by the real libxxhash
// (xxh3-vectors.c): lengths 0..300 one by one, then up to 5000 and a few MiB. Exits 0 on
// pass, 1 on a mismatch; prints the hashing speed on the largest input.
import fs from 'node:fs';
import { xxh3_128_hex } from '../xxh3.js';

const gen = (i) => (Math.imul(i, 131) ^ (i >>> 3) ^ (i >>> 11) ^ Math.imul(i, i)) & 0xff;
const lines = fs.readFileSync(new URL('./xxh3-vectors.txt', import.meta.url), 'utf8').trim().split('\n');
const max = Math.max(...lines.map((l) => Number(l.split(' ')[0])));
const buf = new Uint8Array(max + 16);
for (let i = 0; i < buf.length; ++i) buf[i] = gen(i);
let bad = 0;
for (const line of lines) {
  const [len, want] = line.split(' ');
  const n = Number(len);
  // At offset 1 too: inputs need not start on a word boundary.
  const shifted = new Uint8Array(n + 1);
  shifted.set(buf.subarray(0, n), 1);
  for (const view of [buf.subarray(0, n), shifted.subarray(1)]) {
    const got = xxh3_128_hex(view);
    if (got !== want) { if (bad++ < 10) console.log(`FAIL len ${n}: expected ${want}, got ${got}`); break; }
  }
}
const t0 = performance.now();
xxh3_128_hex(buf.subarray(0, max));
const ms = performance.now() - t0;
console.log(`${lines.length - bad} of ${lines.length} vectors match; ${(max / 1048576 / (ms / 1000)).toFixed(0)} MiB/s on ${max} bytes`);
process.exit(bad ? 1 : 0);
