// bfloat16 mixed precision (the "mixed_bfloat16" policy): convolution and dense layers multiply
// bf16 operands (activations, weights, gradients rounded to nearest even) and accumulate in fp32;
// everything else, the master weights and the tensors between layers stay fp32. The forward pass
// and data gradient of stride-1 3x3 layers with 64 channels and more run the fp32 Winograd kernels
// instead (faster than bf16 direct products there, and closer to the exact result; bf16.cpp,
// bf16_conv_algorithm).
//
// Two paths with the same numerics up to the order of the fp32 additions:
//  - avx512_bf16: conv2d forward, data gradient and weight gradient with vdpbf16ps (bf16_isa.cpp);
//  - emulated (any CPU): the operands rounded to bf16 values in fp32 copies, then the fp32
//    kernels (a product of two bf16 values is exact in fp32, so only the summation order differs).
// Each is a whole float kernel table (the fp32 one with the conv2d and dense entries replaced), so a
// network in mixed precision runs the same layer code with another table.
#pragma once
#include <cstdint>
#include <cstring>

#include "kernels/kernels.h"

namespace cnnbp {

enum class Bf16Path { emulated = 0, avx512_bf16 = 1 };

Bf16Path bf16_detected();   // what the CPU supports (avx512_bf16 needs AVX512_BF16 and the avx512 path)
Bf16Path bf16_path();       // what cnnbp uses: CNNBP_BF16=emulated (or a lowered CPU path) forces emulation
const char* bf16_path_name(Bf16Path p);
bool bf16_compiled();       // whether this build carries the avx512_bf16 kernels

const KernelTable<float>& kernels_bf16();                 // the chosen path's table
const KernelTable<float>& kernels_bf16_for(Bf16Path p);   // an explicit one (tests)

// fp32 -> bf16 bits, rounded to nearest even as VCVTNEPS2BF16 does: a subnormal input becomes a
// signed zero, a NaN stays a (quiet) NaN, values past the largest bf16 round to infinity.
static inline uint32_t bf16_round_bits(uint32_t u) {  // the result in the high half (branch-free: vectorises)
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  const uint32_t nan = (u | 0x00400000u) & 0xffff0000u;
  const uint32_t r = (u & 0x7fffffffu) > 0x7f800000u ? nan : rounded;
  return (u & 0x7f800000u) == 0 ? (u & 0x80000000u) : r;
}
static inline uint16_t bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return uint16_t(bf16_round_bits(u) >> 16);
}
// The same rounding, as an fp32 value (the emulated path's operands).
static inline float bf16_round(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u = bf16_round_bits(u);
  float r;
  std::memcpy(&r, &u, 4);
  return r;
}

#ifdef CNNBP_HAVE_AVX512BF16
// The hardware kernels (bf16_isa.cpp, compiled with -mavx512bf16). ws: conv2d_workspace floats.
// Each returns false for a problem it does not take (padding far larger than the image, strides of
// 5 and more in the data gradient, a weight gradient's window copy past 128 MiB): the caller runs
// the emulated kernel instead.
namespace isa_avx512bf16 {
int64_t conv2d_workspace(const Conv2dParams& p, int nthreads);
bool conv2d_forward(float* y, const float* x, const float* w, const float* b, float* ws, const Conv2dParams& p);
bool conv2d_backward_data(float* dx, const float* dy, const float* w, float* ws, const Conv2dParams& p,
                          bool accumulate);
// dw only: the bias gradient is summed in fp32 by the caller.
bool conv2d_backward_weight(float* dw, const float* dy, const float* x, float* ws, const Conv2dParams& p);
}  // namespace isa_avx512bf16
#endif

}  // namespace cnnbp
