// The device's protocol behaviour through Device.handle() with encoded frames: HELLO_OK's
// fields, buffer round trips at odd offsets and sizes, errors that leave the session usable
// (bad ids, ranges, calls) and those that end it ("rpc:": truncated or unknown frames, a
// request before HELLO), SUPPORTS' reasons, and the hash probe. Exits 0 on pass, 1 on a
// failure, 77 without a WebGPU adapter.
import * as P from '../protocol.js';
import { Device } from '../device.js';
import { openNodeGpu } from '../node-gpu.mjs';
import { xxh3_128_hex } from '../xxh3.js';
import { Client, SKIP } from './harness.mjs';

let failed = 0;
function expect(ok, what) {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failed++;
}

let g;
try { g = await openNodeGpu(); } catch (e) { console.log(`skip: ${e.message}`); process.exit(SKIP); }
const device = new Device(g.device, { adapter: g.description, runtime: g.runtime, hash: xxh3_128_hex, cacheBytes: 1 << 20 });
const c = new Client(device);
const raw = async (bytes) => P.decodeReply(await device.handle(bytes));

// Before HELLO: an rpc: error, and the session is over.
let r = await c.request({ type: P.MsgType.SYNC });
expect(r.type === P.MsgType.ERROR && r.text === 'rpc: expected HELLO first, got SYNC', `request before HELLO: ${r.text}`);
device.sessionStart();
r = await c.request({ type: P.MsgType.HELLO, version: 2 });
expect(r.type === P.MsgType.ERROR && r.text.startsWith('rpc: client speaks protocol 2, this server 3'), `version 2: ${r.text}`);
device.sessionStart();

const h = await c.hello();
expect(h.type === P.MsgType.HELLO_OK && h.version === 3 && h.name === 'webgpu', `HELLO_OK version ${h.version} name ${h.name}`);
expect(h.device.includes(g.description), `device "${h.device}"`);
expect(h.maxConnections === 1 && h.idleTimeoutMs === 0 && h.maxFrameBytes === 16 << 20, 'connections 1, idle 0, frames 16 MiB');
expect(h.memoryBytes === h.totalMemoryBytes && h.memoryBytes > 0 && h.maxBufferBytes <= h.memoryBytes, `memory ${h.memoryBytes}, max buffer ${h.maxBufferBytes}`);
expect(h.capabilities === 1n && h.cacheBytes === 1 << 20, `hash probe advertised, cache ${h.cacheBytes}`);
expect(P.CATALOG_OPS.every((o) => h.ops.includes(o)), `ops: ${h.ops.join(' ')}`);
expect(['f32', 'f16', 'bf16', 'i32'].every((d) => h.dtypes.includes(d)), `dtypes: ${h.dtypes.join(' ')}`);

// Round trips at every offset and length alignment.
const id = await c.alloc(1001);
expect(id === 1, 'first buffer id is 1');
const shadow = new Uint8Array(1001);
let okAll = true;
for (let k = 0; k < 60; ++k) {
  const off = (k * 37) % 990, len = 1 + ((k * 13) % (1001 - off));
  const data = new Uint8Array(len).map((_, i) => (k * 31 + i * 7) & 0xff);
  await c.write(id, off, data);
  shadow.set(data, off);
  const ro = (k * 11) % 1000, rl = (k * 17) % (1001 - ro);
  const back = await c.read(id, ro, rl);
  if (back.length !== rl || back.some((b, i) => b !== shadow[ro + i])) { okAll = false; console.log(`  mismatch at write ${off}+${len}, read ${ro}+${rl}`); break; }
}
const whole = await c.read(id, 0, 1001);
expect(okAll && whole.every((b, i) => b === shadow[i]), 'WRITE/READ at odd offsets and sizes round-trip');

// Errors that leave the session usable.
r = await c.request({ type: P.MsgType.READ, id: 7, offset: 0, size: 4 });
expect(r.type === P.MsgType.ERROR && r.text === 'no buffer 7 on this connection', `unknown id: ${r.text}`);
r = await c.request({ type: P.MsgType.WRITE, id, offset: 1000, data: new Uint8Array(2) });
expect(r.type === P.MsgType.ERROR && r.text === 'bytes 1000+2 lie outside buffer 1 of 1001 bytes', `range: ${r.text}`);
r = await c.request({ type: P.MsgType.READ, id, offset: 2 ** 63, size: 4 });
expect(r.type === P.MsgType.ERROR && /lie outside buffer 1/.test(r.text), `offset 2^63: ${r.text}`);
r = await c.request({ type: P.MsgType.ALLOC, size: 0 });
expect(r.type === P.MsgType.ERROR && r.text === 'cannot allocate a buffer of 0 bytes', `alloc 0: ${r.text}`);
r = await c.request({ type: P.MsgType.ALLOC, size: 2 ** 50 });
expect(r.type === P.MsgType.ERROR && /memory cap/.test(r.text), `alloc 2^50: ${r.text}`);
const t = (buffer, offset, dtype, shape) => ({ buffer, offset, dtype, shape });
r = await c.request({ type: P.MsgType.RUN, call: { op: 'add', attrs: {}, inputs: [t(1, 0, 'f32', [2, 3]), t(9, 0, 'f32', [2, 3])], outputs: [t(1, 48, 'f32', [2, 3])] } });
expect(r.type === P.MsgType.ERROR && r.text === 'add: b names buffer 9, which this connection does not hold', `RUN bad buffer: ${r.text}`);
r = await c.request({ type: P.MsgType.RUN, call: { op: 'add', attrs: {}, inputs: [t(1, 0, 'f32', [2, 3]), t(1, 24, 'f32', [2, 3])], outputs: [t(1, 992, 'f32', [2, 3])] } });
expect(r.type === P.MsgType.ERROR && /lies outside its buffer of 1001 bytes/.test(r.text), `RUN outside: ${r.text}`);
r = await c.request({ type: P.MsgType.RUN, call: { op: 'add', attrs: {}, inputs: [t(1, 0, 'f32', [2, 3]), t(1, 24, 'f32', [2, 3])], outputs: [t(1, 4, 'f32', [2, 3])] } });
expect(r.type === P.MsgType.ERROR && r.text === 'add: output out overlaps input a (only in-place outputs may)', `RUN overlap: ${r.text}`);
r = await c.request({ type: P.MsgType.RUN, call: { op: 'matmul', attrs: {}, inputs: [t(1, 0, 'f32', [3, 64]), t(1, 0, 'f32', [48, 32])], outputs: [t(1, 0, 'f32', [3, 48])] } });
expect(r.type === P.MsgType.ERROR && r.text === 'matmul: x f32 [3, 64] and w f32 [48, 32] disagree on K', `RUN bad shapes: ${r.text}`);
r = await c.request({ type: P.MsgType.SYNC });
expect(r.type === P.MsgType.OK, 'the session goes on after those errors');

// SUPPORTS: reasons.
const sup = async (call) => c.supports(call);
r = await sup({ op: 'moe_route', attrs: { k: 2, norm: 1 }, inputs: [t(1, 0, 'f32', [2, 8])], outputs: [t(1, 0, 'f32', [2, 8])] });
expect(!r.flag && r.text === 'moe_route: output route overlaps input logits (only in-place outputs may)', `moe_route: ${r.text}`);
r = await sup({ op: 'moe_route', attrs: { k: 2, norm: 1 }, inputs: [t(1, 0, 'f32', [2, 8])], outputs: [t(2, 0, 'f32', [2, 8])] });
expect(r.flag && r.text === '', `moe_route is supported: ${r.text}`);
r = await sup({ op: 'matmul', attrs: {}, inputs: [t(1, 0, 'f32', [3, 64]), t(2, 0, 'q4_0', [48, 64])], outputs: [t(3, 0, 'f32', [3, 48])] });
expect(!r.flag && r.text === 'webgpu: no kernel for matmul with w q4_0', `q4_0: ${r.text}`);
r = await sup({ op: 'rmsnorm', attrs: { eps: 1e-5, bogus: 1 }, inputs: [t(1, 0, 'f32', [3, 64]), t(2, 0, 'f32', [64])], outputs: [t(3, 0, 'f32', [3, 64])] });
expect(!r.flag && r.text === "rmsnorm: unknown attribute 'bogus'", `unknown attribute: ${r.text}`);
const maxBind = g.device.limits.maxStorageBufferBindingSize;
const rows = Math.ceil(maxBind / 4 / 4096) + 1;
r = await sup({ op: 'matmul', attrs: {}, inputs: [t(1, 0, 'f32', [1, 4096]), t(2, 0, 'f32', [rows, 4096])], outputs: [t(3, 0, 'f32', [1, rows])] });
expect(!r.flag && r.text === `webgpu: matmul input 1 is ${rows * 4096 * 4} bytes, over this device's maxStorageBufferBindingSize ${maxBind}`, `binding limit: ${r.text}`);
r = await sup({ op: 'attention', attrs: { n_heads: 4, n_kv_heads: 2, head_dim: 16, scale: 0.25, window: 8, softcap: 30 },
  inputs: [t(1, 0, 'f32', [2, 64]), t(2, 0, 'f32', [9, 32]), t(3, 0, 'f32', [9, 32])], outputs: [t(4, 0, 'f32', [2, 64])] });
expect(r.flag && r.text === '', 'attention with window and softcap is supported');
r = await c.request({ type: P.MsgType.RUN, call: { op: 'moe_route', attrs: {}, inputs: [], outputs: [] } });
expect(r.type === P.MsgType.ERROR && !r.text.startsWith('rpc:'), `RUN of a refused call: ${r.text}`);

// Hash probe: unknown hash -> not held; CACHE_HASHED keeps a copy; a second buffer gets it.
const big = new Uint8Array(5000).map((_, i) => (i * 7 + 3) & 0xff);
const hash = xxh3_128_hex(big);
const b2 = await c.alloc(5003);
r = await c.request({ type: P.MsgType.WRITE_HASHED, id: b2, offset: 3, size: 5000, hash });
expect(r.type === P.MsgType.HASH_PROBE && r.flag === false, 'WRITE_HASHED of unknown bytes: not held');
await c.write(b2, 3, big);
r = await c.request({ type: P.MsgType.CACHE_HASHED, id: b2, offset: 3, size: 5000, hash: 'f'.repeat(32) });
expect(r.type === P.MsgType.ERROR && /do not have hash/.test(r.text), `CACHE_HASHED with a wrong hash: ${r.text}`);
await c.ok({ type: P.MsgType.CACHE_HASHED, id: b2, offset: 3, size: 5000, hash });
const b3 = await c.alloc(6000);
r = await c.request({ type: P.MsgType.WRITE_HASHED, id: b3, offset: 1, size: 5000, hash });
const copied = await c.read(b3, 1, 5000);
expect(r.flag === true && copied.every((b, i) => b === big[i]), 'WRITE_HASHED of cached bytes: held, and copied in');
await c.free(b3);
r = await c.request({ type: P.MsgType.FREE, id: b3 });
expect(r.type === P.MsgType.ERROR && r.text === `no buffer ${b3} on this connection`, 'FREE twice is an ERROR');

// Undecodable frames end the session with rpc:.
const frame = P.encodeRequest({ type: P.MsgType.READ, id, offset: 0, size: 4 });
r = await raw(frame.subarray(0, frame.length - 3));
expect(r.type === P.MsgType.ERROR && r.text.startsWith('rpc:'), `truncated frame: ${r.text}`);
r = await c.request({ type: P.MsgType.SYNC });
expect(r.type === P.MsgType.ERROR && r.text.startsWith('rpc:'), `after an rpc: error the session is over: ${r.text}`);
// Messages cut short inside (length prefix consistent), unknown types, trailing bytes.
const cases = [
  ['truncated READ body', new Uint8Array([5, 0, 0, 0, 0x05, 1, 0, 0, 0]), /^rpc: truncated READ message$/],
  ['unknown type', new Uint8Array([1, 0, 0, 0, 0x42]), /^rpc: unknown message type 66$/],
  ['trailing bytes', new Uint8Array([2, 0, 0, 0, 0x0a, 0]), /^rpc: 1 trailing bytes after a SYNC message$/],
  ['zero length', new Uint8Array([0, 0, 0, 0]), /^rpc: zero-length frame$/],
];
for (const [what, bytes, re] of cases) {
  device.sessionStart();
  await c.hello();
  r = await raw(bytes);
  expect(r.type === P.MsgType.ERROR && re.test(r.text), `${what}: ${r.text}`);
}
// A call with a rank-9 tensor and an unknown op.
device.sessionStart();
await c.hello();
const call = P.encodeRequest({ type: P.MsgType.RUN, call: { op: 'add', attrs: {}, inputs: [t(1, 0, 'f32', [1, 1, 1, 1, 1, 1, 1, 1])], outputs: [] } });
const rank = call.indexOf(8, 4 + 1 + 4 + 3 + 4 + 4 + 16 + 1); // the rank byte
call[rank] = 9;
r = await raw(call);
expect(r.type === P.MsgType.ERROR && r.text === 'rpc: tensor rank 9 above 8', `rank 9: ${r.text}`);
device.sessionStart();
await c.hello();
r = await raw(P.encodeRequest({ type: P.MsgType.SUPPORTS, call: { op: 'conv2d', attrs: {}, inputs: [], outputs: [] } }));
expect(r.type === P.MsgType.ERROR && r.text === "rpc: unknown op 'conv2d'", `unknown op: ${r.text}`);

// Session end frees the buffers and keeps the cache.
device.sessionStart();
await c.hello();
const b4 = await c.alloc(5000);
r = await c.request({ type: P.MsgType.WRITE_HASHED, id: b4, offset: 0, size: 5000, hash });
expect(b4 === 1 && r.flag === true, 'a new session starts at id 1 and finds the cached bytes');

console.log(`${failed ? 'FAILED' : 'passed'} (${device.counters.requests} requests, ${device.counters.errors} errors counted)`);
g.device.destroy();
process.exit(failed ? 1 : 0);
