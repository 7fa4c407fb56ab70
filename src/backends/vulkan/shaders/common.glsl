// Shared by every TapML compute shader: one push-constant block for all ops (byte offsets of
// each bound tensor inside its descriptor window, eight integer and two float parameters),
// a linear workgroup index over a 2-D grid (counts past maxComputeWorkGroupCount[0] spill
// into y), and a reader for weights of any float dtype from a uint buffer, which needs no
// 16-bit storage feature: f16 via unpackHalf2x16, bf16 via a shift.
#extension GL_GOOGLE_include_directive : enable
layout(push_constant) uniform Params {
  uint o[6];   // byte offset of binding i's tensor inside its window
  uint u[8];   // integer parameters; u[7] is the weight dtype (0 f32, 1 f16, 2 bf16)
  float f[2];  // float parameters
} pc;

uint group_index() { return gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x; }

// A weight reader named NAME over the uint buffer BUF of binding BINDING.
#define WEIGHT_READER(NAME, BUF, BINDING)                          \
  float NAME(uint i) {                                              \
    uint t = pc.u[7];                                               \
    if (t == 0u) return uintBitsToFloat(BUF[pc.o[BINDING] / 4u + i]); \
    uint h = pc.o[BINDING] / 2u + i;                                \
    uint word = BUF[h >> 1];                                        \
    uint bits = (h & 1u) != 0u ? (word >> 16) : (word & 0xFFFFu);   \
    if (t == 1u) return unpackHalf2x16(bits).x;                     \
    return uintBitsToFloat(bits << 16);                             \
  }
