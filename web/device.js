// The TapML WebGPU device, independent of its transport: handle(frame) takes one request
// frame of the device protocol (docs/protocol.md, version 3) and returns the reply frame, as
// `tapml serve` would. Buffers are GPUBuffers; op calls run the WGSL kernels of kernels/ops.js.
// A session (sessionStart .. sessionEnd) begins with HELLO; its end frees its buffers and
// keeps the hash-probe cache. Counters are kept for a page to show.

import * as P from './protocol.js';
import { validateCall, CATALOG } from './catalog.js';
import { GpuRunner, alignDown, alignUp } from './kernels/runner.js';
import { KERNELS } from './kernels/ops.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const CACHE_MIN_BYTES = 4096;

export const DEVICE_DTYPES = ['f32', 'f16', 'bf16', 'i32'];

// Copies the limits an adapter or device reports into a plain object.
export function plainLimits(limits) {
  const out = {};
  for (const k in limits) if (typeof limits[k] === 'number') out[k] = limits[k];
  return out;
}

// "maxStorageBufferBindingSize:65536,maxBufferSize:1048576" -> {name: value}: limits to hold
// this device to, below what its adapter offers, to stand in for a smaller one (a phone's
// 128 MiB binding limit on a desktop GPU). Throws on a malformed item or an unknown name.
export function parseLimitOverrides(text, known) {
  const out = {};
  for (const item of (text ?? '').split(',').filter((s) => s)) {
    const m = item.match(/^([A-Za-z]+):(\d+)$/);
    if (!m) throw new Error(`limit override '${item}' is not NAME:VALUE (e.g. maxStorageBufferBindingSize:134217728)`);
    if (!(m[1] in known)) throw new Error(`unknown WebGPU limit '${m[1]}' (known: ${Object.keys(known).sort().join(', ')})`);
    out[m[1]] = Number(m[2]);
  }
  return out;
}

// The device's limits with `overrides` applied where they are lower (a max*) or, for the
// alignments (min*), higher: an override never claims more than the adapter has.
export function heldLimits(limits, overrides = {}) {
  const out = { ...limits };
  for (const [k, v] of Object.entries(overrides))
    out[k] = k.startsWith('min') ? Math.max(out[k], v) : Math.min(out[k], v);
  return out;
}

export class Device {
  // gpu: a GPUDevice. opts: adapter (a description string), runtime ("node 20 + webgpu
  // 0.6.2"), native16 (use shader-f16; default: whether the device has it), limits (lower
  // limits to hold to, parseLimitOverrides), memoryBytes,
  // cacheBytes, hash (bytes -> 32 hex digits, or null: no hash probe), token (a HELLO token
  // to require; the relay checks tokens, so none by default).
  constructor(gpu, opts = {}) {
    this.gpu = gpu;
    this.limits = heldLimits(plainLimits(gpu.limits), opts.limits);
    this.limitOverrides = opts.limits ?? {};
    this.adapter = opts.adapter ?? 'WebGPU adapter';
    this.runtime = opts.runtime ?? '';
    this.native16 = opts.native16 ?? gpu.features.has('shader-f16');
    this.hash = opts.hash ?? null;
    this.maxBufferBytes = this.limits.maxBufferSize;
    this.memoryBytes = Math.min(opts.memoryBytes ?? 2 * GiB, 2 * GiB);
    this.cacheBytes = this.hash ? (opts.cacheBytes ?? 512 * MiB) : 0;
    this.token = opts.token ?? '';
    this.runner = new GpuRunner(gpu, this.limits);
    // Kernels that check their inputs on the GPU (token ids, cache rows) record the first
    // failure here, [code, value, limit, extra]; READ and SYNC report it (checkStatus), so no
    // RUN waits for the GPU to read an input back.
    this.status = gpu.createBuffer({ size: 16, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
    this.cache = new Map(); // `${hash}:${size}` -> Uint8Array, oldest first
    this.cacheUsed = 0;
    this.constants = new Map();
    this.gpuErrors = [];
    this.counters = { requests: 0, runs: 0, bytesIn: 0, bytesOut: 0, errors: 0, current: '', sessions: 0 };
    this.lastErrors = [];
    this.onchange = null; // called after every request (a page's refresh)
    gpu.addEventListener?.('uncapturederror', (ev) => this.gpuErrors.push(ev.error?.message ?? String(ev.error)));
    this.resetSession();
  }

  resetSession() {
    if (this.buffers) for (const b of this.buffers.values()) b.gpu.destroy();
    this.buffers = new Map();
    this.nextId = 1;
    this.used = 0;
    this.greeted = false;
    this.closed = false;
  }

  sessionStart() { this.resetSession(); this.counters.sessions++; }
  sessionEnd() { this.runner.flush(); this.resetSession(); this.counters.current = ''; this.changed(); }

  changed() { if (this.onchange) this.onchange(this); }

  noteError(text) {
    this.counters.errors++;
    this.lastErrors.unshift(`${new Date().toISOString().slice(11, 19)} ${text}`);
    this.lastErrors.length = Math.min(this.lastErrors.length, 8);
  }

  // One request frame in, one reply frame out. Never throws.
  async handle(frame) {
    const bytes = frame instanceof Uint8Array ? frame : new Uint8Array(frame);
    this.counters.requests++;
    this.counters.bytesIn += bytes.length;
    let reply;
    try {
      if (this.closed) throw new P.ProtocolError('rpc: this session has ended');
      const m = P.decodeMessage(P.framePayload(bytes));
      this.counters.current = P.msgName(m.type) + (m.call ? ` ${m.call.op} ${m.call.site}` : '');
      this.changed();
      reply = await this.serve(m);
    } catch (e) {
      let text = e && e.message ? e.message : String(e);
      if (e instanceof P.ProtocolError && !text.startsWith('rpc:')) text = 'rpc: ' + text;
      if (text.startsWith('rpc:')) this.closed = true;
      this.noteError(text);
      reply = P.encodeError(P.printable(text));
    }
    this.counters.current = '';
    this.counters.bytesOut += reply.length;
    this.changed();
    return reply;
  }

  helloOk() {
    const ops = Object.keys(KERNELS);
    return P.encodeHelloOk({
      name: 'webgpu',
      device: [this.adapter, this.runtime].filter(Boolean).join(', '),
      maxBufferBytes: Math.min(this.maxBufferBytes, this.memoryBytes),
      memoryBytes: this.memoryBytes,
      totalMemoryBytes: this.memoryBytes,
      cacheBytes: this.cacheBytes,
      maxConnections: 1,
      idleTimeoutMs: 0,
      maxFrameBytes: P.DEFAULT_FRAME_BYTES,
      capabilities: this.hash ? P.CAP_HASH_PROBE : 0n,
      ops,
      dtypes: DEVICE_DTYPES,
    });
  }

  buffer(id) {
    const b = this.buffers.get(id);
    if (!b) throw new Error(`no buffer ${id} on this connection`);
    return b;
  }

  checkRange(b, id, offset, size) {
    if (!(offset <= b.size && size <= b.size - offset))
      throw new Error(`bytes ${offset}+${size} lie outside buffer ${id} of ${b.size} bytes`);
  }

  async serve(m) {
    const T = P.MsgType;
    if (!this.greeted) {
      if (m.type !== T.HELLO) throw new P.ProtocolError(`rpc: expected HELLO first, got ${P.msgName(m.type)}`);
      if (m.version !== P.PROTOCOL_VERSION)
        throw new P.ProtocolError(`rpc: client speaks protocol ${m.version}, this server ${P.PROTOCOL_VERSION} ` +
          '(use the same TapML release on both machines)');
      if (this.token && m.token !== this.token)
        throw new P.ProtocolError(m.token ? 'rpc: wrong token' : 'rpc: this server requires a token (tcp://HOST:PORT?token=T)');
      this.greeted = true;
      return this.helloOk();
    }
    if (m.type >= 0x80 || m.type === T.HELLO) throw new P.ProtocolError(`rpc: unexpected ${P.msgName(m.type)} from a client`);
    switch (m.type) {
      case T.ALLOC: {
        if (m.size <= 0) throw new Error('cannot allocate a buffer of 0 bytes');
        if (m.size > this.memoryBytes - this.used)
          throw new Error(`allocating ${m.size} bytes would pass this connection's memory cap of ${this.memoryBytes} ` +
            `bytes (${this.used} in use); the server's cap is ${this.memoryBytes} bytes`);
        const padded = alignUp(m.size, 4);
        if (padded > this.maxBufferBytes)
          throw new Error(`webgpu: a buffer of ${m.size} bytes is over this device's maxBufferSize ${this.maxBufferBytes}`);
        const gpu = this.gpu.createBuffer({ size: padded,
          usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
        const id = this.nextId++;
        this.buffers.set(id, { gpu, size: m.size, padded });
        this.used += m.size;
        return P.encodeAllocated(id);
      }
      case T.FREE: {
        const b = this.buffer(m.id);
        this.runner.flush();
        b.gpu.destroy();
        this.buffers.delete(m.id);
        this.used -= b.size;
        return P.encodeOk();
      }
      case T.WRITE: {
        const b = this.buffer(m.id);
        this.checkRange(b, m.id, m.offset, m.data.length);
        this.write(b, m.offset, m.data);
        return P.encodeOk();
      }
      case T.READ: {
        const b = this.buffer(m.id);
        this.checkRange(b, m.id, m.offset, m.size);
        const limit = P.DEFAULT_FRAME_BYTES - P.CHUNK_HEADER_ROOM;
        if (m.size > limit)
          throw new Error(`read of ${m.size} bytes exceeds the frame limit; read in chunks of at most ${limit}`);
        const data = await this.read(b, m.offset, m.size, true);
        this.throwGpuErrors();
        return P.encodeData(data);
      }
      case T.WRITE_HASHED: {
        const b = this.buffer(m.id);
        this.checkRange(b, m.id, m.offset, m.size);
        const held = this.cache.get(`${m.hash}:${m.size}`);
        if (held && this.hash) this.write(b, m.offset, held);
        return P.encodeHashProbe(Boolean(held && this.hash));
      }
      case T.CACHE_HASHED: {
        const b = this.buffer(m.id);
        this.checkRange(b, m.id, m.offset, m.size);
        const key = `${m.hash}:${m.size}`;
        if (!this.hash || m.size < CACHE_MIN_BYTES || m.size > this.cacheBytes || this.cache.has(key)) return P.encodeOk();
        const bytes = await this.read(b, m.offset, m.size);
        // Hashed here: a client cannot plant bytes under a hash another's weights are found by.
        if (this.hash(bytes) !== m.hash) throw new Error(`CACHE_HASHED: the buffer's bytes do not have hash ${m.hash}`);
        for (const [k, v] of this.cache) {
          if (this.cacheUsed + m.size <= this.cacheBytes) break;
          this.cache.delete(k);
          this.cacheUsed -= v.length;
        }
        this.cache.set(key, bytes);
        this.cacheUsed += m.size;
        return P.encodeOk();
      }
      case T.SUPPORTS: {
        let reason;
        try {
          reason = this.supports(m.call);
        } catch (e) {
          reason = e.message;
        }
        return P.encodeSupport(!reason, reason ? P.printable(reason) : '');
      }
      case T.RUN: {
        await this.run(m.call);
        this.counters.runs++;
        return P.encodeOk();
      }
      case T.SYNC: {
        await this.read(null, 0, 0, true);
        this.throwGpuErrors();
        return P.encodeOk();
      }
      default:
        throw new P.ProtocolError(`rpc: unexpected ${P.msgName(m.type)}`);
    }
  }

  throwGpuErrors() {
    if (this.gpuErrors.length === 0) return;
    const first = this.gpuErrors[0];
    const n = this.gpuErrors.length;
    this.gpuErrors = [];
    throw new Error(`webgpu: ${n === 1 ? 'a GPU error' : `${n} GPU errors`}: ${first.split('\n')[0]}`);
  }

  // The reason this device cannot run the call, or '' when it can (the catalog's check, a
  // kernel for it, every tensor within the adapter's binding limits).
  supports(call) {
    for (const k of call.attrs.keys())
      if (P.printable(k) !== k) return `${call.op}: unknown attribute '${P.printable(k)}'`;
    const kernel = KERNELS[call.op];
    if (!kernel) return `webgpu: no kernel for ${call.op}`;
    validateCall(call, P.tensorBytes);
    const own = kernel.supports ? kernel.supports(call) : null;
    if (own) return `webgpu: ${own}`;
    const max = this.limits.maxStorageBufferBindingSize;
    const names = (which, i) => `${call.op} ${which} ${i}`;
    const check = (t, which, i) => {
      const bytes = P.tensorBytes(t);
      // The binding starts up to one offset alignment before the tensor.
      if (bytes + this.runner.align > max)
        return `webgpu: ${names(which, i)} is ${bytes} bytes, over this device's maxStorageBufferBindingSize ${max}`;
      return '';
    };
    for (let i = 0; i < call.inputs.length; ++i) { const r = check(call.inputs[i], 'input', i); if (r) return r; }
    for (let i = 0; i < call.outputs.length; ++i) { const r = check(call.outputs[i], 'output', i); if (r) return r; }
    return '';
  }

  async run(call) {
    // Buffers first (RUN's own check), then the catalog, then this device's limits.
    const place = (t, what) => {
      const b = this.buffers.get(t.buffer);
      if (!b) throw new Error(`${call.op}: ${what} names buffer ${t.buffer}, which this connection does not hold`);
      const bytes = P.tensorBytes(t);
      if (!(t.offset <= b.size && bytes <= b.size - t.offset))
        throw new Error(`${call.op}: ${what} [${t.shape.join(', ')}] at offset ${t.offset} lies outside its buffer of ${b.size} bytes`);
    };
    const reason = this.supports(call);
    if (reason) {
      if (reason.startsWith(call.op + ':')) throw new Error(reason);
      throw new Error(`${call.op}: not supported by webgpu: ${reason}`);
    }
    const kernel = KERNELS[call.op];
    const def = CATALOG[call.op];
    call.inputs.forEach((t, i) => place(t, def.inputs[i]));
    call.outputs.forEach((t, i) => place(t, def.outputs[i]));
    for (const t of [...call.inputs, ...call.outputs]) {
      const esize = t.dtype === 'f16' || t.dtype === 'bf16' ? 2 : 4;
      if (t.offset % esize !== 0)
        throw new Error(`webgpu: ${call.op}: a ${t.dtype} tensor at byte offset ${t.offset} is not aligned to its ${esize}-byte elements`);
    }
    if (call.outputs.every((t) => P.numel(t.shape) === 0)) return;
    const ctx = this.context();
    if (kernel.check) await kernel.check(ctx, call);
    kernel.encode(ctx, call);
  }

  context() {
    return {
      runner: this.runner,
      native16: this.native16,
      status: { buffer: this.status, offset: 0, bytes: 16, esize: 4, writable: true },
      entry: (t, writable, esize) => {
        const b = this.buffers.get(t.buffer);
        return { buffer: b.gpu, offset: t.offset, bytes: P.tensorBytes(t), esize, writable };
      },
      readI32: async (t) => {
        const b = this.buffers.get(t.buffer);
        const bytes = await this.read(b, t.offset, P.tensorBytes(t));
        return new Int32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
      },
      constantF32: (key, make) => {
        let buf = this.constants.get(key);
        if (!buf) {
          const data = make();
          buf = this.gpu.createBuffer({ size: alignUp(data.byteLength, 4), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
          this.gpu.queue.writeBuffer(buf, 0, data);
          this.constants.set(key, buf);
        }
        return { buffer: buf, offset: 0, bytes: buf.size, esize: 4, writable: false };
      },
    };
  }

  // Writes bytes at any offset: the whole 4-byte words directly, a ragged head or tail by
  // merging with the buffer's current bytes.
  write(b, offset, data) {
    if (data.length === 0) return;
    // Work recorded before this write must see the bytes as they were.
    this.runner.flush();
    const lo = alignDown(offset, 4), hi = alignUp(offset + data.length, 4);
    if (lo === offset && hi === offset + data.length) {
      this.gpu.queue.writeBuffer(b.gpu, offset, data.buffer, data.byteOffset, data.length);
      return;
    }
    // Stage the bytes at their position within aligned words, then a kernel merges the words
    // with the masked bytes of the destination.
    const staged = new Uint8Array(hi - lo);
    staged.set(data, offset - lo);
    const tmp = this.runner.tempBuffer(staged.length, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST);
    this.gpu.queue.writeBuffer(tmp, 0, staged);
    this.runner.dispatch(PATCH_BYTES,
      [{ buffer: b.gpu, offset: lo, bytes: hi - lo, esize: 4, writable: true },
        { buffer: tmp, offset: 0, bytes: staged.length, esize: 4, writable: false }],
      [['u', staged.length / 4], ['u', offset - lo], ['u', offset - lo + data.length]],
      Math.ceil(staged.length / 4 / 64));
    this.runner.flush();
  }

  // `size` bytes of buffer b from `offset`, after all recorded work; with `checked`, the
  // status of the GPU-side input checks comes back in the same copy, and a failure recorded
  // there is thrown (and cleared) instead.
  async read(b, offset, size, checked = false) {
    if (size === 0 && !checked) return new Uint8Array(0);
    this.runner.flush();
    const lo = alignDown(offset, 4), hi = alignUp(offset + size, 4);
    const span = size === 0 ? 0 : hi - lo;
    const staging = this.gpu.createBuffer({ size: span + (checked ? 16 : 0), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const enc = this.gpu.createCommandEncoder();
    if (span) enc.copyBufferToBuffer(b.gpu, lo, staging, 0, span);
    if (checked) enc.copyBufferToBuffer(this.status, 0, staging, span, 16);
    this.gpu.queue.submit([enc.finish()]);
    try {
      await staging.mapAsync(GPUMapMode.READ);
      const mapped = staging.getMappedRange();
      if (checked) {
        const [code, value, limit, extra] = new Uint32Array(mapped, span, 4);
        if (code !== 0) {
          this.gpu.queue.writeBuffer(this.status, 0, new Uint32Array(4));
          throw new Error(statusMessage(code, value, limit, extra));
        }
      }
      return new Uint8Array(mapped).slice(offset - lo, offset - lo + size);
    } finally {
      staging.destroy();
    }
  }

}

// The failure a kernel recorded in the status buffer (kernels/ops.js, STATUS_FNS).
function statusMessage(code, value, limit, extra) {
  const signed = value | 0;
  if (code === 1) return `embedding: token id ${signed} outside the vocabulary of ${limit}`;
  if (code === 2) return `kv_store: rows ${signed}..${signed + extra} do not fit a cache of ${limit}`;
  return `webgpu: a kernel reported failure ${code} (${value}, ${limit}, ${extra})`;
}

// Words 0..n of D (from o0) become S's bytes in [from, to) and keep D's elsewhere.
const PATCH_BYTES = /* wgsl */ `
@group(0) @binding(0) var<storage, read_write> D: array<u32>;
@group(0) @binding(1) var<storage, read> S: array<u32>;
struct Params { o0: u32, o1: u32, groups: u32, n: u32, first_byte: u32, end_byte: u32 }
@group(0) @binding(2) var<uniform> P: Params;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let w = (wid.x + wid.y * nwg.x) * 64u + lid;
  if (w >= P.n) { return; }
  var mask = 0u;
  for (var k = 0u; k < 4u; k++) {
    let b = w * 4u + k;
    if (b >= P.first_byte && b < P.end_byte) { mask = mask | (0xffu << (8u * k)); }
  }
  D[P.o0 + w] = (D[P.o0 + w] & ~mask) | (S[P.o1 + w] & mask);
}`;
