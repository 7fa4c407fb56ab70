// The TapML device protocol, version 3 (docs/protocol.md), server side: decodes the requests a
// client sends and encodes the replies, byte for byte as src/rpc/protocol.cpp does. Frames are
// u32 length + u8 type + body, little-endian; a WebSocket binary message carries one whole
// frame. decodeRequest() either returns a message whose every field is within the protocol's
// limits or throws a ProtocolError whose text starts "rpc:" (the connection then ends).

export const PROTOCOL_VERSION = 3;
export const HELLO_MAGIC = 0x4c4d5054; // "TPML" as little-endian bytes
export const MAX_FRAME_BYTES = 64 * 1024 * 1024;
export const DEFAULT_FRAME_BYTES = 16 * 1024 * 1024;
export const CHUNK_HEADER_ROOM = 64;
export const MAX_STRING = 4096;
export const MAX_ATTRS = 64;
export const MAX_TENSORS = 16;
export const MAX_RANK = 8;
export const MAX_LIST_ITEMS = 1024;
export const MAX_DIM = 2 ** 40;
export const CAP_HASH_PROBE = 1n;

export const MsgType = Object.freeze({
  HELLO: 0x01, ALLOC: 0x02, FREE: 0x03, WRITE: 0x04, READ: 0x05, WRITE_HASHED: 0x06,
  CACHE_HASHED: 0x07, SUPPORTS: 0x08, RUN: 0x09, SYNC: 0x0a,
  HELLO_OK: 0x81, OK: 0x82, ALLOCATED: 0x83, DATA: 0x84, HASH_PROBE: 0x85, SUPPORT: 0x86,
  ERROR: 0xff,
});

const MSG_NAMES = new Map(Object.entries(MsgType).map(([k, v]) => [v, k]));
export function msgName(type) { return MSG_NAMES.get(type) ?? `type ${type}`; }

// Wire code i is DTYPES[i]; fixed by the protocol. Block types carry their block size.
export const DTYPES = ['f32', 'f16', 'bf16', 'i32', 'q4_0', 'q4_1', 'q5_0', 'q5_1', 'q8_0',
  'q2_k', 'q3_k', 'q4_k', 'q5_k', 'q6_k'];
const BLOCK_ELEMS = { q4_0: 32, q4_1: 32, q5_0: 32, q5_1: 32, q8_0: 32,
  q2_k: 256, q3_k: 256, q4_k: 256, q5_k: 256, q6_k: 256 };
const BLOCK_BYTES = { q4_0: 18, q4_1: 20, q5_0: 22, q5_1: 24, q8_0: 34,
  q2_k: 84, q3_k: 110, q4_k: 144, q5_k: 176, q6_k: 210 };
const ELEM_BYTES = { f32: 4, f16: 2, bf16: 2, i32: 4 };
export function blockElems(dtype) { return BLOCK_ELEMS[dtype] ?? 1; }
export function dtypeCode(dtype) {
  const i = DTYPES.indexOf(dtype);
  if (i < 0) throw new Error(`rpc: dtype ${dtype} has no code in the protocol`);
  return i;
}

// The catalog's op names (src/ops/op_list.h), in catalog order; a call naming another is
// undecodable.
export const CATALOG_OPS = ['embedding', 'rmsnorm', 'matmul', 'rope', 'kv_store', 'attention',
  'swiglu', 'add', 'gelu', 'layernorm', 'bias', 'mul', 'scale', 'softcap', 'sigmoid_gate',
  'moe_route', 'moe_ffn'];

export class ProtocolError extends Error {}
function fail(text) { throw new ProtocolError(text); }

// Control bytes (below 0x20, 0x7f) written as \xHH, as rpc::printable does.
export function printable(text) {
  return text.replace(/[\x00-\x1f\x7f]/g, (c) => '\\x' + c.charCodeAt(0).toString(16).padStart(2, '0'));
}

const utf8 = new TextEncoder();
// Strings travel as raw bytes; invalid UTF-8 decodes lossily (only shown or compared).
const utf8Decoder = new TextDecoder('utf-8', { fatal: false });

// A tensor's element count and byte size (rows of whole blocks for block dtypes).
export function numel(shape) { return shape.reduce((a, b) => a * b, 1); }
export function tensorBytes(t) {
  const n = numel(t.shape);
  const block = BLOCK_ELEMS[t.dtype];
  if (block) return (n / block) * BLOCK_BYTES[t.dtype];
  return n * ELEM_BYTES[t.dtype];
}
export function describe(t) { return `${t.dtype} [${t.shape.join(', ')}]`; }

class Reader {
  constructor(bytes, what) {
    this.b = bytes;
    this.v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
    this.what = what;
  }
  need(n) { if (this.b.length - this.pos < n) fail(`rpc: truncated ${this.what} message`); }
  u8() { this.need(1); return this.b[this.pos++]; }
  u32() { this.need(4); const v = this.v.getUint32(this.pos, true); this.pos += 4; return v; }
  u64big() { this.need(8); const v = this.v.getBigUint64(this.pos, true); this.pos += 8; return v; }
  // As a Number: exact up to 2^53; larger values (never a valid id, offset or size here)
  // come out approximately, still larger than anything they are compared with.
  u64() { return Number(this.u64big()); }
  f64() { this.need(8); const v = this.v.getFloat64(this.pos, true); this.pos += 8; return v; }
  str(field) {
    const n = this.u32();
    if (n > MAX_STRING) fail(`rpc: ${this.what} ${field} of ${n} bytes exceeds ${MAX_STRING}`);
    this.need(n);
    const s = utf8Decoder.decode(this.b.subarray(this.pos, this.pos + n));
    this.pos += n;
    return s;
  }
  count(field, max) {
    const n = this.u32();
    if (n > max) fail(`rpc: ${this.what} has ${n} ${field} (at most ${max})`);
    return n;
  }
  dtype() {
    const code = this.u8();
    if (code >= DTYPES.length) fail(`rpc: unknown dtype code ${code}`);
    return DTYPES[code];
  }
  tensor() {
    const buffer = this.u64();
    const offset = this.u64();
    const dtype = this.dtype();
    const rank = this.u8();
    if (rank > MAX_RANK) fail(`rpc: tensor rank ${rank} above ${MAX_RANK}`);
    const shape = [];
    let n = 1;
    for (let i = 0; i < rank; ++i) {
      const big = this.u64big();
      if (big > BigInt(MAX_DIM)) fail(`rpc: tensor dimension ${big} out of range`);
      const d = Number(big);
      if (d === 0) n = 0;
      else if (n > 0) {
        if (n > Math.floor(MAX_DIM / d)) fail('rpc: tensor of more than 2^40 elements');
        n *= d;
      }
      shape.push(d);
    }
    const block = blockElems(dtype);
    if (block !== 1 && !(rank >= 1 && shape[rank - 1] % block === 0))
      fail(`rpc: tensor of dtype ${dtype} with rows of ${rank >= 1 ? shape[rank - 1] : 'no'} ` +
        `elements, not whole blocks of ${block}`);
    return { buffer, offset, dtype, shape };
  }
  call() {
    const op = this.str('op name');
    if (op.length === 0) fail('rpc: empty op name');
    if (!CATALOG_OPS.includes(op)) fail(`rpc: unknown op '${printable(op)}'`);
    const attrs = new Map();
    const na = this.count('attributes', MAX_ATTRS);
    for (let i = 0; i < na; ++i) {
      const k = this.str('attribute name');
      const v = this.f64();
      if (attrs.has(k)) fail(`rpc: attribute '${printable(k)}' given twice`);
      if (!Number.isFinite(v)) fail(`rpc: attribute '${printable(k)}' is not finite`);
      attrs.set(k, v);
    }
    const inputs = [], outputs = [];
    const ni = this.count('inputs', MAX_TENSORS);
    for (let i = 0; i < ni; ++i) inputs.push(this.tensor());
    const no = this.count('outputs', MAX_TENSORS);
    for (let i = 0; i < no; ++i) outputs.push(this.tensor());
    const site = this.str('site');
    return { op, attrs, inputs, outputs, site };
  }
  hash() {
    const h = this.str('hash');
    if (h.length !== 32) fail('rpc: hash must be 32 hex digits');
    if (!/^[0-9a-f]{32}$/.test(h)) fail('rpc: hash must be lowercase hex');
    return h;
  }
  rest() { const d = this.b.subarray(this.pos); this.pos = this.b.length; return d; }
  done() {
    if (this.pos !== this.b.length)
      fail(`rpc: ${this.b.length - this.pos} trailing bytes after a ${this.what} message`);
  }
}

// Checks the length prefix of a whole frame and returns its payload (type + body).
export function framePayload(frame, maxFrameBytes = MAX_FRAME_BYTES) {
  if (frame.length < 4) fail('rpc: truncated frame header');
  const n = new DataView(frame.buffer, frame.byteOffset, 4).getUint32(0, true);
  if (n === 0) fail('rpc: zero-length frame');
  if (n > maxFrameBytes) fail(`rpc: frame of ${n} bytes exceeds the limit of ${maxFrameBytes}`);
  if (frame.length - 4 < n) fail(`rpc: truncated frame (${frame.length - 4} of ${n} bytes)`);
  if (frame.length - 4 > n) fail(`rpc: ${frame.length - 4 - n} bytes after a frame of ${n}`);
  return frame.subarray(4);
}

// Decodes one message payload of either direction's request types. Replies from a client are
// decoded too (so the caller can say "unexpected HELLO_OK from a client").
export function decodeMessage(payload) {
  if (payload.length === 0) fail('rpc: empty frame');
  const type = payload[0];
  const known = (type >= 0x01 && type <= 0x0a) || (type >= 0x81 && type <= 0x86) || type === 0xff;
  if (!known) fail(`rpc: unknown message type ${type}`);
  const r = new Reader(payload.subarray(1), msgName(type));
  const m = { type };
  switch (type) {
    case MsgType.HELLO:
      m.magic = r.u32();
      if (m.magic !== HELLO_MAGIC) fail('rpc: not a TapML client (bad HELLO magic)');
      m.version = r.u32();
      m.client = r.str('client name');
      m.token = r.str('token');
      break;
    case MsgType.ALLOC: m.size = r.u64(); break;
    case MsgType.FREE: m.id = r.u64(); break;
    case MsgType.WRITE: m.id = r.u64(); m.offset = r.u64(); m.data = r.rest(); break;
    case MsgType.READ: m.id = r.u64(); m.offset = r.u64(); m.size = r.u64(); break;
    case MsgType.WRITE_HASHED:
    case MsgType.CACHE_HASHED:
      m.id = r.u64(); m.offset = r.u64(); m.size = r.u64(); m.hash = r.hash(); break;
    case MsgType.SUPPORTS:
    case MsgType.RUN: m.call = r.call(); break;
    case MsgType.SYNC: case MsgType.OK: break;
    case MsgType.ALLOCATED: m.id = r.u64(); break;
    case MsgType.DATA: m.data = r.rest(); break;
    case MsgType.HASH_PROBE:
    case MsgType.SUPPORT: {
      const f = r.u8();
      if (f > 1) fail(`rpc: ${msgName(type)} flag must be 0 or 1`);
      m.flag = f === 1;
      if (type === MsgType.SUPPORT) m.text = r.str('reason');
      break;
    }
    case MsgType.HELLO_OK:
      // A server never receives one; its fields are not needed.
      r.rest();
      break;
    case MsgType.ERROR: m.text = r.str('message'); break;
  }
  r.done();
  return m;
}

class Writer {
  constructor(capacity = 256) {
    this.buf = new Uint8Array(capacity);
    this.view = new DataView(this.buf.buffer);
    this.pos = 4; // room for the length prefix
  }
  reserve(n) {
    if (this.pos + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.pos + n));
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(v) { this.reserve(1); this.buf[this.pos++] = v; }
  u32(v) { this.reserve(4); this.view.setUint32(this.pos, v >>> 0, true); this.pos += 4; }
  u64(v) { this.reserve(8); this.view.setBigUint64(this.pos, BigInt(v), true); this.pos += 8; }
  bytes(d) { this.reserve(d.length); this.buf.set(d, this.pos); this.pos += d.length; }
  str(s) {
    let b = utf8.encode(s);
    if (b.length > MAX_STRING) fail(`rpc: string of ${b.length} bytes exceeds the protocol's ${MAX_STRING}`);
    this.u32(b.length);
    this.bytes(b);
  }
  frame() {
    const n = this.pos - 4;
    if (n > MAX_FRAME_BYTES) fail(`rpc: message of ${n} bytes exceeds the frame limit`);
    this.view.setUint32(0, n, true);
    return this.buf.subarray(0, this.pos);
  }
}

// Cuts a UTF-8 text to at most MAX_STRING bytes, on a character boundary.
export function clipText(text) {
  let b = utf8.encode(text);
  if (b.length <= MAX_STRING) return text;
  let end = MAX_STRING;
  while (end > 0 && (b[end] & 0xc0) === 0x80) --end;
  return utf8Decoder.decode(b.subarray(0, end));
}

// Whole reply frames (length prefix included).
export function encodeHelloOk(h) {
  const w = new Writer(1024);
  w.u8(MsgType.HELLO_OK);
  w.u32(h.version ?? PROTOCOL_VERSION);
  w.str(clipText(h.name));
  w.str(clipText(h.device));
  w.u64(h.maxBufferBytes);
  w.u64(h.memoryBytes);
  w.u64(h.totalMemoryBytes);
  w.u64(h.cacheBytes);
  w.u32(h.maxConnections);
  w.u32(h.idleTimeoutMs);
  w.u32(h.maxFrameBytes);
  w.u64(h.capabilities);
  if (h.ops.length > MAX_LIST_ITEMS || h.dtypes.length > MAX_LIST_ITEMS) fail('rpc: too many ops or dtypes');
  w.u32(h.ops.length);
  for (const o of h.ops) w.str(o);
  w.u32(h.dtypes.length);
  for (const d of h.dtypes) w.u8(dtypeCode(d));
  return w.frame();
}
export function encodeOk() { const w = new Writer(8); w.u8(MsgType.OK); return w.frame(); }
export function encodeAllocated(id) {
  const w = new Writer(16); w.u8(MsgType.ALLOCATED); w.u64(id); return w.frame();
}
export function encodeData(bytes) {
  const w = new Writer(bytes.length + 8); w.u8(MsgType.DATA); w.bytes(bytes); return w.frame();
}
export function encodeHashProbe(held) {
  const w = new Writer(8); w.u8(MsgType.HASH_PROBE); w.u8(held ? 1 : 0); return w.frame();
}
export function encodeSupport(ok, reason) {
  const w = new Writer(64); w.u8(MsgType.SUPPORT); w.u8(ok ? 1 : 0); w.str(clipText(reason)); return w.frame();
}
export function encodeError(text) {
  const w = new Writer(64); w.u8(MsgType.ERROR); w.str(clipText(text)); return w.frame();
}

// The request side, for tests and tools that play the client.
export function encodeRequest(m) {
  const w = new Writer(64 + (m.data ? m.data.length : 0));
  w.u8(m.type);
  const tensor = (t) => {
    w.u64(t.buffer); w.u64(t.offset); w.u8(dtypeCode(t.dtype)); w.u8(t.shape.length);
    for (const d of t.shape) w.u64(d);
  };
  switch (m.type) {
    case MsgType.HELLO:
      w.u32(m.magic ?? HELLO_MAGIC); w.u32(m.version ?? PROTOCOL_VERSION);
      w.str(m.client ?? ''); w.str(m.token ?? ''); break;
    case MsgType.ALLOC: w.u64(m.size); break;
    case MsgType.FREE: w.u64(m.id); break;
    case MsgType.WRITE: w.u64(m.id); w.u64(m.offset); w.bytes(m.data); break;
    case MsgType.READ: w.u64(m.id); w.u64(m.offset); w.u64(m.size); break;
    case MsgType.WRITE_HASHED: case MsgType.CACHE_HASHED:
      w.u64(m.id); w.u64(m.offset); w.u64(m.size); w.str(m.hash); break;
    case MsgType.SUPPORTS: case MsgType.RUN: {
      const c = m.call;
      w.str(c.op);
      const attrs = c.attrs instanceof Map ? [...c.attrs] : Object.entries(c.attrs ?? {});
      w.u32(attrs.length);
      for (const [k, v] of attrs) {
        w.str(k); w.reserve(8); w.view.setFloat64(w.pos, v, true); w.pos += 8;
      }
      w.u32(c.inputs.length); c.inputs.forEach(tensor);
      w.u32(c.outputs.length); c.outputs.forEach(tensor);
      w.str(c.site ?? '');
      break;
    }
    case MsgType.SYNC: break;
    default: fail(`rpc: cannot encode request ${msgName(m.type)}`);
  }
  return w.frame();
}

// Decodes a whole reply frame (for tests and tools that play the client).
export function decodeReply(frame) {
  const p = framePayload(frame);
  const type = p[0];
  if (type === MsgType.HELLO_OK) {
    const r = new Reader(p.subarray(1), 'HELLO_OK');
    const h = { type };
    h.version = r.u32(); h.name = r.str('name'); h.device = r.str('device');
    h.maxBufferBytes = r.u64(); h.memoryBytes = r.u64(); h.totalMemoryBytes = r.u64();
    h.cacheBytes = r.u64(); h.maxConnections = r.u32(); h.idleTimeoutMs = r.u32();
    h.maxFrameBytes = r.u32(); h.capabilities = r.u64big();
    h.ops = []; for (let n = r.count('ops', MAX_LIST_ITEMS), i = 0; i < n; ++i) h.ops.push(r.str('op'));
    h.dtypes = []; for (let n = r.count('dtypes', MAX_LIST_ITEMS), i = 0; i < n; ++i) h.dtypes.push(r.dtype());
    r.done();
    return h;
  }
  return decodeMessage(p);
}
