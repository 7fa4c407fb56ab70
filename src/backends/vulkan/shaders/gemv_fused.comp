#version 450
#include "common.glsl"
// Decode matmuls (one token row) fused with their neighbours; the backend holds calls back to
// find them (backend/call_fusion.h):
//   mode 0: up to three weight matrices on the same input row x, their rows numbered one after
//           another (q, k, v: N0 + N1 + N2 rows), outputs o0, o1, o2;
//   mode 1: two of one shape whose outputs feed swiglu: o2 = silu(o0) * o1, o0 and o1 written
//           too (gate, up);
//   mode 2: one whose output is added to r: o2 = r + o0 (a residual).
// NORM_K > 0: x is first rmsnorm(x, nw, eps) over its NORM_K values (nw f32), computed by every
// workgroup as rmsnorm.comp computes it (the same sums in the same order) into shared memory,
// and written to xn by workgroup 0, as the held rmsnorm call would have.
//
// A workgroup is 128 / TEAM teams of TEAM invocations; a team computes ROWS consecutive rows:
// each invocation takes weights strided over K, and after one barrier for all ROWS rows the
// team's partial sums are added by its first invocation. With VEC8 (K % 8 == 0 and every
// weight 16-byte aligned) an invocation takes 8 consecutive weights at a time, one 16-byte load
// of f16 or bf16, two of f32; else one at a time, from 32-bit words. GPUs take TEAM 32 (a
// warp's loads side by side), ROWS 1; a CPU device (lavapipe, which runs a barrier as a switch
// of every SIMD slice of the group) takes a team of its SIMD width and several rows, so that
// one barrier serves many rows.
// Bindings: x, nw, xn, w0, o0, w1, o1, w2, o2, r. u0 = K, u1..u3 = N0..N2, u4 = mode, u6 bit 0:
// o2 is o0, bit 1: o2 is o1 (an in-place epilogue: only o2 is written, so no order between
// stores through two bindings is relied on). f0 = eps.
//
// GEMV_FFN (the variant gemv_fused_ffn): mode 1 followed by the down projection and the
// residual add of a decode step's feed-forward block, y = h Wd^T and xout = r + y, where h =
// o2 is the swiglu row of N0 = F values and Wd [D, F] (w2, of dtype WTYPE) its weight. Each
// workgroup computes SLICE consecutive rows of h (in passes of the rows its teams take at a
// time), writes them to o0, o1 and o2 as mode 1 does and keeps them in shared memory, then
// multiplies them by its SLICE columns of Wd, for every row of D, into partial[g][0..D). It
// then counts itself done on a device counter; the workgroup that counts last sums the
// partials in workgroup order (the same bits whichever finishes last) into y and xout, and sets
// the counter back to 0 for the next dispatch. No workgroup waits for another, so any order
// or concurrency of workgroups gives the same result (attention.comp's projection does the
// same). DOWN_VEC8 (F % 8 == 0, SLICE % 8 == 0 and Wd 16-byte aligned): Wd is read 16 bytes
// at a time. Bindings 10-13: y, xout, the partials and the counter (the 17-binding layout);
// u5 = D.
layout(constant_id = 0) const uint NORM_K = 0u;
layout(constant_id = 1) const uint WTYPE = 0u;  // 0 f32, 1 f16, 2 bf16
layout(constant_id = 2) const uint TEAM = 32u;
layout(constant_id = 3) const uint ROWS = 1u;
layout(constant_id = 4) const bool VEC8 = true;
layout(constant_id = 5) const uint SLICE = 32u;  // GEMV_FFN: rows of h per workgroup
layout(constant_id = 6) const bool DOWN_VEC8 = true;
layout(local_size_x = 128) in;
layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = 1) readonly buffer NW { float nw[]; };
layout(binding = 2) writeonly buffer XN { float xn[]; };
// The weights as 16-byte vectors (VEC8) and as 32-bit words.
layout(binding = 3) readonly buffer W0 { uvec4 w0[]; };
layout(binding = 3) readonly buffer W0s { uint w0s[]; };
layout(binding = 4) writeonly buffer O0 { float o0[]; };
layout(binding = 5) readonly buffer W1 { uvec4 w1[]; };
layout(binding = 5) readonly buffer W1s { uint w1s[]; };
layout(binding = 6) writeonly buffer O1 { float o1[]; };
layout(binding = 7) readonly buffer W2 { uvec4 w2[]; };
layout(binding = 7) readonly buffer W2s { uint w2s[]; };
layout(binding = 8) writeonly buffer O2 { float o2[]; };
layout(binding = 9) readonly buffer R { float r[]; };
shared float xs[NORM_K + 1u];
shared float red[ROWS * 128u];
shared float red_up[ROWS * 128u];
#ifdef GEMV_FFN
layout(binding = 10) writeonly buffer Y { float y[]; };
layout(binding = 11) writeonly buffer XOut { float xout[]; };
// Written and read by different workgroups of one dispatch.
layout(binding = 12) coherent buffer Partial { float partial[]; };
layout(binding = 13) coherent buffer Done { uint done; };
shared float hs[SLICE];  // this workgroup's rows of h
shared bool last_group;
#endif

// 16 bytes of matrix m at 16-byte index i.
uvec4 wload(uint m, uint i) {
  if (m == 0u) return w0[pc.o[3] / 16u + i];
  if (m == 1u) return w1[pc.o[5] / 16u + i];
  return w2[pc.o[7] / 16u + i];
}

// Weights e .. e + 7 (e % 8 == 0) of matrix m, counted from its first element.
void weights8(uint m, uint e, out vec4 a, out vec4 b) {
  if (WTYPE == 0u) {
    a = uintBitsToFloat(wload(m, e / 4u));
    b = uintBitsToFloat(wload(m, e / 4u + 1u));
  } else {
    uvec4 u = wload(m, e / 8u);
    if (WTYPE == 1u) {
      a = vec4(unpackHalf2x16(u.x), unpackHalf2x16(u.y));
      b = vec4(unpackHalf2x16(u.z), unpackHalf2x16(u.w));
    } else {
      a = uintBitsToFloat(uvec4(u.x << 16, u.x & 0xFFFF0000u, u.y << 16, u.y & 0xFFFF0000u));
      b = uintBitsToFloat(uvec4(u.z << 16, u.z & 0xFFFF0000u, u.w << 16, u.w & 0xFFFF0000u));
    }
  }
}

// Weight e of matrix m, counted from its first element (of any alignment its dtype allows).
float weight1(uint m, uint e) {
  uint o = pc.o[3u + 2u * m];
  uint word_at = WTYPE == 0u ? o / 4u + e : (o / 2u + e) / 2u;
  uint word = m == 0u ? w0s[word_at] : m == 1u ? w1s[word_at] : w2s[word_at];
  if (WTYPE == 0u) return uintBitsToFloat(word);
  uint bits = ((o / 2u + e) & 1u) != 0u ? word >> 16 : word & 0xFFFFu;
  return WTYPE == 1u ? unpackHalf2x16(bits).x : uintBitsToFloat(bits << 16);
}

// Input k of the (normed) row.
float input1(uint k) { return NORM_K > 0u ? xs[k] : x[pc.o[0] / 4u + k]; }

// Inputs k .. k + 7 of the (normed) row.
void inputs8(uint k, out vec4 a, out vec4 b) {
  if (NORM_K > 0u) {
    a = vec4(xs[k], xs[k + 1u], xs[k + 2u], xs[k + 3u]);
    b = vec4(xs[k + 4u], xs[k + 5u], xs[k + 6u], xs[k + 7u]);
  } else {
    uint i = pc.o[0] / 4u + k;
    a = vec4(x[i], x[i + 1u], x[i + 2u], x[i + 3u]);
    b = vec4(x[i + 4u], x[i + 5u], x[i + 6u], x[i + 7u]);
  }
}

// Row `row` of the group's rows: matrix m's row n.
void locate(uint row, out uint m, out uint n) {
  m = 0u, n = row;
  if (pc.u[4] == 0u && n >= pc.u[1]) {
    n -= pc.u[1];
    m = 1u;
    if (n >= pc.u[2]) n -= pc.u[2], m = 2u;
  }
}

// Each team's partial sums of rows first .. first + ROWS - 1 into red (and red_up for mode 1).
void team_rows(uint first, uint rows, uint K, uint mode, uint tid, uint lane) {
  for (uint j = 0u; j < ROWS; ++j) {
    uint row = first + j;
    uint m, n;
    locate(row, m, n);
    float acc = 0.0, up = 0.0;
    if (row < rows && VEC8) {
      for (uint k = lane * 8u; k < K; k += TEAM * 8u) {
        vec4 xa, xb, wa, wb;
        inputs8(k, xa, xb);
        weights8(m, n * K + k, wa, wb);
        acc += dot(wa, xa) + dot(wb, xb);
        if (mode == 1u) {
          weights8(1u, n * K + k, wa, wb);
          up += dot(wa, xa) + dot(wb, xb);
        }
      }
    } else if (row < rows) {
      for (uint k = lane; k < K; k += TEAM) {
        float xv = input1(k);
        acc += weight1(m, n * K + k) * xv;
        if (mode == 1u) up += weight1(1u, n * K + k) * xv;
      }
    }
    red[j * 128u + tid] = acc;
    red_up[j * 128u + tid] = up;
  }
}

// A team's first invocation: the sums of its rows and the epilogue, written out (GEMV_FFN:
// h's rows kept in shared memory too, from row h0 on).
void finish_rows(uint first, uint rows, uint mode, uint tid, uint h0) {
  for (uint j = 0u; j < ROWS; ++j) {
    uint row = first + j;
    if (row >= rows) return;
    uint m, n;
    locate(row, m, n);
    float s = 0.0, su = 0.0;
    for (uint l = 0u; l < TEAM; ++l) s += red[j * 128u + tid + l];
    if (mode == 1u)
      for (uint l = 0u; l < TEAM; ++l) su += red_up[j * 128u + tid + l];
    const uint o2_is_o0 = pc.u[6] & 1u, o2_is_o1 = pc.u[6] & 2u;
    if (mode == 0u) {
      if (m == 0u) o0[pc.o[4] / 4u + n] = s;
      else if (m == 1u) o1[pc.o[6] / 4u + n] = s;
      else o2[pc.o[8] / 4u + n] = s;
    } else if (mode == 1u) {
      if (o2_is_o0 == 0u) o0[pc.o[4] / 4u + n] = s;
      if (o2_is_o1 == 0u) o1[pc.o[6] / 4u + n] = su;
      float h = s / (1.0 + exp(-s)) * su;
      o2[pc.o[8] / 4u + n] = h;
#ifdef GEMV_FFN
      hs[row - h0] = h;
#endif
    } else {
      float rv = r[pc.o[9] / 4u + n];
      if (o2_is_o0 == 0u) o0[pc.o[4] / 4u + n] = s;
      o2[pc.o[8] / 4u + n] = rv + s;
    }
  }
}

#ifdef GEMV_FFN
// Rows h0 .. h0 + n - 1 of h (in hs) times those columns of Wd into this workgroup's partial
// sums, then, in the workgroup that finishes last, the sum of every workgroup's and the add.
void down_and_add(uint g, uint groups, uint h0, uint n, uint F, uint tid) {
  const uint D = pc.u[5], pb = pc.o[12] / 4u;
  for (uint d = tid; d < D; d += 128u) {
    const uint e = d * F + h0;
    float acc = 0.0;
    if (DOWN_VEC8) {
      for (uint i = 0u; i < n; i += 8u) {
        vec4 wa, wb;
        weights8(2u, e + i, wa, wb);
        acc += dot(wa, vec4(hs[i], hs[i + 1u], hs[i + 2u], hs[i + 3u])) +
               dot(wb, vec4(hs[i + 4u], hs[i + 5u], hs[i + 6u], hs[i + 7u]));
      }
    } else {
      for (uint i = 0u; i < n; ++i) acc += weight1(2u, e + i) * hs[i];
    }
    partial[pb + g * D + d] = acc;
  }
  // The partials are available device-wide before the count that says they are done; the
  // last workgroup makes the others' visible before it reads them.
  memoryBarrierBuffer();
  barrier();
  if (tid == 0u) last_group = atomicAdd(done, 1u) == groups - 1u;
  barrier();
  if (!last_group) return;
  memoryBarrierBuffer();
  for (uint d = tid; d < D; d += 128u) {
    float sum = 0.0;
    for (uint w = 0u; w < groups; ++w) sum += partial[pb + w * D + d];
    float rv = r[pc.o[9] / 4u + d];
    y[pc.o[10] / 4u + d] = sum;
    xout[pc.o[11] / 4u + d] = rv + sum;
  }
  if (tid == 0u) done = 0u;
}
#endif

void main() {
  const uint K = pc.u[0], mode = pc.u[4];
  const uint tid = gl_LocalInvocationID.x, lane = tid % TEAM;
#ifdef GEMV_FFN
  // Groups past the last (a count spilt into y) have no rows and must not count as done.
  const uint F = pc.u[1], g = group_index(), groups = (F + SLICE - 1u) / SLICE;
  if (g >= groups) return;
#endif
  if (NORM_K > 0u) {
    uint xo = pc.o[0] / 4u;
    float ss = 0.0;
    for (uint d = tid; d < K; d += 128u) ss += x[xo + d] * x[xo + d];
    red[tid] = ss;
    barrier();
    for (uint s = 64u; s > 0u; s >>= 1) {
      if (tid < s) red[tid] += red[tid + s];
      barrier();
    }
    float inv = 1.0 / sqrt(red[0] / float(K) + pc.f[0]);
    bool first_group = group_index() == 0u;
    for (uint d = tid; d < K; d += 128u) {
      float v = x[xo + d] * inv * nw[pc.o[1] / 4u + d];
      xs[d] = v;
      if (first_group) xn[pc.o[2] / 4u + d] = v;
    }
    barrier();
  }
  const uint rows = mode == 0u ? pc.u[1] + pc.u[2] + pc.u[3] : pc.u[1];
#ifdef GEMV_FFN
  const uint team_rows_at_once = 128u / TEAM * ROWS, h0 = g * SLICE;
  for (uint pass = 0u; pass < SLICE; pass += team_rows_at_once) {
    const uint first = h0 + pass + tid / TEAM * ROWS;
    team_rows(first, rows, K, 1u, tid, lane);
    barrier();
    if (lane == 0u) finish_rows(first, rows, 1u, tid, h0);
    barrier();  // red is written again by the next pass; hs is read below
  }
  down_and_add(g, groups, h0, min(SLICE, F - h0), F, tid);
#else
  const uint first = (group_index() * (128u / TEAM) + tid / TEAM) * ROWS;
  team_rows(first, rows, K, mode, tid, lane);
  barrier();
  if (lane == 0u) finish_rows(first, rows, mode, tid, 0u);
#endif
}
