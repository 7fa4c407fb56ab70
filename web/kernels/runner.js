// Dispatches compute kernels on a GPUDevice: pipelines cached by WGSL source, the dispatches'
// uniforms in slots of one ring buffer (written with one writeBuffer when the commands are
// submitted), commands recorded into one pending encoder and one compute pass, submitted
// lazily (flush()), so that consecutive op calls travel to the GPU together.
//
// Tensors may start at any (element-aligned) byte offset: a binding covers the range from
// the offset rounded down to minStorageBufferOffsetAlignment, and the kernel receives the
// tensor's first element index within it. Two bindings of one buffer, one of them writable,
// are not allowed in one dispatch (Dawn checks whole buffers, whatever the ranges); the later
// of them is then bound to a scratch copy (copied in before the dispatch, and out after it
// when written).

export const MAX_GROUPS_PER_DIM = 65535;
const UNIFORM_RING_BYTES = 64 * 1024;

export function alignDown(x, a) { return x - (x % a); }
export function alignUp(x, a) { return Math.ceil(x / a) * a; }

export class GpuRunner {
  constructor(device, limits) {
    this.device = device;
    this.limits = limits;
    this.align = limits.minStorageBufferOffsetAlignment || 256;
    this.maxGroups = Math.min(limits.maxComputeWorkgroupsPerDimension || MAX_GROUPS_PER_DIM, MAX_GROUPS_PER_DIM);
    this.pipelines = new Map();
    this.encoder = null;
    this.transient = []; // buffers freed once the pending commands are submitted
    this.dispatches = 0;
    this.pass = null; // the open compute pass of the pending encoder
    this.uniformAlign = limits.minUniformBufferOffsetAlignment || 256;
    this.ring = null; // created on first use
    this.ringData = new ArrayBuffer(UNIFORM_RING_BYTES);
    this.ringView = new DataView(this.ringData);
    this.ringUsed = 0; // bytes of ringData that the pending commands use
    // A CPU implementation (SwiftShader, lavapipe): it runs invocations as coroutines over a
    // few cores, where barriers and idle invocations cost more than serial loops.
    const info = device.adapterInfo ?? {};
    this.cpu = Boolean(info.isFallbackAdapter) ||
      /swiftshader|llvmpipe|lavapipe/i.test(`${info.architecture ?? ''} ${info.description ?? ''} ${info.device ?? ''}`);
  }

  pipeline(code) {
    let p = this.pipelines.get(code);
    if (!p) {
      const module = this.device.createShaderModule({ code });
      p = this.device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
      this.pipelines.set(code, p);
    }
    return p;
  }

  pendingEncoder() {
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    return this.encoder;
  }

  endPass() {
    if (this.pass) { this.pass.end(); this.pass = null; }
  }

  computePass() {
    if (!this.pass) this.pass = this.pendingEncoder().beginComputePass();
    return this.pass;
  }

  // Submits what is recorded; the GPU runs it in order with everything submitted before.
  // The ring's bytes are written first: queue writes and submits run in call order, so the
  // slots may be reused by the next commands.
  flush() {
    if (this.encoder) {
      this.endPass();
      if (this.ringUsed) this.device.queue.writeBuffer(this.ring, 0, this.ringData, 0, this.ringUsed);
      this.device.queue.submit([this.encoder.finish()]);
      this.encoder = null;
    }
    this.ringUsed = 0;
    for (const b of this.transient) b.destroy();
    this.transient = [];
  }

  async finish() {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
  }

  tempBuffer(size, usage) {
    const b = this.device.createBuffer({ size: Math.max(4, alignUp(size, 4)), usage });
    this.transient.push(b);
    return b;
  }

  // values: [kind, value] pairs, kind 'u' (u32), 'i' (i32) or 'f' (f32), in the order of the
  // kernel's uniform struct (every member a 4-byte scalar). Returns the binding of a slot of
  // the ring holding them; the caller has made room (uniformRoom).
  uniform(values) {
    if (!this.ring)
      this.ring = this.device.createBuffer({ size: UNIFORM_RING_BYTES, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    const size = Math.max(16, alignUp(values.length * 4, 16));
    const offset = this.ringUsed;
    const view = this.ringView;
    values.forEach(([kind, v], i) => {
      if (kind === 'f') view.setFloat32(offset + i * 4, v, true);
      else if (kind === 'i') view.setInt32(offset + i * 4, v, true);
      else view.setUint32(offset + i * 4, v >>> 0, true);
    });
    for (let i = values.length * 4; i < size; i += 4) view.setUint32(offset + i, 0, true);
    this.ringUsed = alignUp(offset + size, this.uniformAlign);
    return { buffer: this.ring, offset, size };
  }

  // Submits the pending commands when the ring lacks a slot of `count` values.
  uniformRoom(count) {
    if (this.ringUsed + Math.max(16, alignUp(count * 4, 16)) > UNIFORM_RING_BYTES) this.flush();
  }

  // Places the tensors of one dispatch. Each entry: {buffer: GPUBuffer, offset (bytes), bytes,
  // esize (bytes per element as the kernel indexes it), writable}. Returns per entry the
  // binding (buffer, offset, size) and the element index of the tensor's start within it.
  place(entries) {
    const enc = this.pendingEncoder();
    const placed = [];
    const copyOut = [];
    for (const e of entries) {
      const lo = alignDown(e.offset, this.align);
      const hi = alignUp(e.offset + Math.max(e.bytes, 1), 4);
      // Dawn tracks usage per buffer, not per range: a buffer written by a dispatch cannot
      // be bound a second time in it at all.
      const clash = placed.some((p) => p.src === e.buffer && (p.writable || e.writable));
      if (!clash) {
        placed.push({ src: e.buffer, lo, hi, writable: e.writable,
          binding: { buffer: e.buffer, offset: lo, size: hi - lo }, first: (e.offset - lo) / e.esize });
        continue;
      }
      // A scratch copy of the tensor's 4-byte-aligned range.
      const clo = alignDown(e.offset, 4);
      const size = hi - clo;
      const scratch = this.tempBuffer(size, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST);
      this.endPass();
      enc.copyBufferToBuffer(e.buffer, clo, scratch, 0, size);
      if (e.writable) copyOut.push([scratch, e.buffer, clo, size]);
      placed.push({ src: scratch, lo: 0, hi: size, writable: e.writable,
        binding: { buffer: scratch, offset: 0, size }, first: (e.offset - clo) / e.esize });
    }
    return { placed, copyOut };
  }

  // Records one dispatch of `groups` workgroups (split over x and y when more than a
  // dimension takes). The kernel's uniform struct starts with one u32 per entry (its first
  // element index), then `groups` as u32, then `params`. `code` is the WGSL source, or a
  // function from the entries' first element indices to it (for kernels with a variant that
  // needs aligned tensors).
  dispatch(code, entries, params, groups) {
    if (groups <= 0) return;
    this.uniformRoom(entries.length + 1 + params.length);
    const { placed, copyOut } = this.place(entries);
    const pipeline = this.pipeline(typeof code === 'function' ? code(placed.map((p) => p.first)) : code);
    const uni = this.uniform([...placed.map((p) => ['u', p.first]), ['u', groups], ...params]);
    const layoutEntries = placed.map((p, i) => ({ binding: i, resource: p.binding }));
    layoutEntries.push({ binding: placed.length, resource: uni });
    const bindGroup = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: layoutEntries });
    const pass = this.computePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    const x = Math.min(groups, this.maxGroups);
    const y = Math.ceil(groups / x);
    if (y > this.maxGroups) throw new Error(`webgpu: ${groups} workgroups exceed this adapter's dispatch limits`);
    pass.dispatchWorkgroups(x, y);
    if (copyOut.length) {
      this.endPass();
      const enc = this.pendingEncoder();
      for (const [scratch, dst, off, size] of copyOut) enc.copyBufferToBuffer(scratch, 0, dst, off, size);
    }
    this.dispatches++;
  }
}

// WGSL pieces shared by the kernels.

// The uniform struct's leading members for `n` bindings: first element indices, then groups.
export function headerFields(n) {
  let s = '';
  for (let i = 0; i < n; ++i) s += `  o${i}: u32,\n`;
  return s + '  groups: u32,\n';
}

// The flat workgroup index of a dispatch split over x and y.
export const GROUP_INDEX = 'wid.x + wid.y * nwg.x';

// f16 and bf16 bits (low 16 bits of h) to f32, exactly, with integer operations only (f16
// subnormals included, which a float conversion may flush).
export const HALF_FNS = /* wgsl */ `
fn f16_bits_to_f32(h: u32) -> f32 {
  let s = (h & 0x8000u) << 16u;
  let e = (h >> 10u) & 0x1fu;
  let m = h & 0x3ffu;
  if (e == 0u) { return bitcast<f32>(s | bitcast<u32>(f32(m) * 5.9604644775390625e-8)); }
  if (e == 31u) { return bitcast<f32>(s | 0x7f800000u | (m << 13u)); }
  return bitcast<f32>(s | ((e + 112u) << 23u) | (m << 13u));
}
fn half_of(w: u32, i: u32) -> u32 { return select(w & 0xffffu, w >> 16u, (i & 1u) == 1u); }
`;

// A function `fn NAME(i: u32) -> f32` reading element i of binding VAR of a float dtype, and
// the declaration of that binding. With native16, f16 is read as WGSL f16 (shader-f16).
export function weightReader(fnName, varName, binding, dtype, native16) {
  if (dtype === 'f32')
    return { enable: false, decl: `@group(0) @binding(${binding}) var<storage, read> ${varName}: array<f32>;`,
      fn: `fn ${fnName}(i: u32) -> f32 { return ${varName}[i]; }`, esize: 4 };
  if (dtype === 'f16' && native16)
    return { enable: true, decl: `@group(0) @binding(${binding}) var<storage, read> ${varName}: array<f16>;`,
      fn: `fn ${fnName}(i: u32) -> f32 { return f32(${varName}[i]); }`, esize: 2 };
  const conv = dtype === 'bf16' ? 'bitcast<f32>(h << 16u)' : 'f16_bits_to_f32(h)';
  return { enable: false, decl: `@group(0) @binding(${binding}) var<storage, read> ${varName}: array<u32>;`,
    fn: `fn ${fnName}(i: u32) -> f32 { let h = half_of(${varName}[i >> 1u], i); return ${conv}; }`, esize: 2 };
}

// tanh without the cancellation of (e^2y - 1) / (e^2y + 1) near 0: a polynomial below 0.625
// (Cephes' tanhf), 1 - 2 / (e^2|y| + 1) above. sigmoid without overflow. sin and cos with an
// exact argument reduction (Cody-Waite, Cephes' constants) and polynomials on [-pi/4, pi/4],
// since WGSL guarantees little accuracy for sin/cos of large arguments.
export const MATH_FNS = /* wgsl */ `
fn tanh_acc(y: f32) -> f32 {
  let a = abs(y);
  if (a < 0.625) {
    let z = y * y;
    return ((((-5.70498872745e-3 * z + 2.06390887954e-2) * z - 5.37397155531e-2) * z
             + 1.33314422036e-1) * z - 3.33332819422e-1) * z * y + y;
  }
  if (a > 9.0) { return sign(y); }
  let r = 1.0 - 2.0 / (exp(2.0 * a) + 1.0);
  return select(r, -r, y < 0.0);
}
fn sigmoid_acc(z: f32) -> f32 {
  if (z >= 0.0) { return 1.0 / (1.0 + exp(-z)); }
  let e = exp(z);
  return e / (1.0 + e);
}
fn sincos_acc(xin: f32) -> vec2<f32> {
  let x = abs(xin);
  var ss = select(1.0, -1.0, xin < 0.0);
  var sc = 1.0;
  var j = u32(x * 1.27323954473516);
  var y = f32(j);
  if ((j & 1u) == 1u) { j += 1u; y += 1.0; }
  j = j & 7u;
  let z = ((x - y * 0.78515625) - y * 2.4187564849853515625e-4) - y * 3.77489497744594108e-8;
  if (j > 3u) { j -= 4u; ss = -ss; sc = -sc; }
  let zz = z * z;
  let c = ((2.443315711809948e-5 * zz - 1.388731625493765e-3) * zz + 4.166664568298827e-2) * zz * zz
          - 0.5 * zz + 1.0;
  let s = ((-1.9515295891e-4 * zz + 8.3321608736e-3) * zz - 1.6666654611e-1) * zz * z + z;
  if (j == 2u) { return vec2<f32>(ss * c, -sc * s); }
  return vec2<f32>(ss * s, sc * c);
}
// erfc with a fractional error below 1.2e-7 everywhere (Numerical Recipes' erfcc).
fn erfc_acc(x: f32) -> f32 {
  let z = abs(x);
  let t = 1.0 / (1.0 + 0.5 * z);
  let r = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
          t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
          t * (-0.82215223 + t * 0.17087277)))))))));
  return select(r, 2.0 - r, x < 0.0);
}
`;
