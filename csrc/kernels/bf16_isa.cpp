// The AVX512_BF16 kernels (CMake object k_avx512bf16, compiled with -mavx512bf16 on top of the
// AVX-512 flags): conv2d forward, data gradient and weight gradient in bf16 with fp32 accumulation. As in
// kernels_isa.cpp, everything but the exported functions has internal linkage. bf16.cpp puts them
// in the mixed-precision table, with the emulated kernels for what they do not take.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "core/parallel.h"
#include "kernels/bf16.h"
#include "kernels/kernels.h"

namespace cnnbp {
namespace isa_avx512bf16 {
namespace {

#include "kernels/ref/common.inl"
#include "kernels/ref/conv2d.inl"
#include "kernels/simd/vec.inl"
#include "kernels/simd/conv2d.inl"
#include "kernels/simd/conv2d_bf16.inl"

}  // namespace

int64_t conv2d_workspace(const Conv2dParams& p, int nthreads) {
  if (portable_is_better(p)) return 0;
  int64_t need = bf16_fwd_ws(p, nthreads);
  Conv2dParams q;
  const int64_t b = bwd_data_as_forward(p, &q) ? bf16_fwd_ws(q, nthreads)
                    : bwd_by_phases(p)         ? bf16_bwd_phases_ws(p, nthreads) : 0;
  need = need > b ? need : b;
  const int64_t c = bf16_wgrad_ws(p, nthreads);
  return need > c ? need : c;
}

bool conv2d_backward_weight(float* dw, const float* dy, const float* x, float* ws, const Conv2dParams& p) {
  if (portable_is_better(p) || bf16_wgeom(p).x2 > (int64_t(1) << 26)) return false;  // X2 past 128 MiB: emulate
  bf16_wgrad(dw, dy, x, ws, p);
  return true;
}

bool conv2d_forward(float* y, const float* x, const float* w, const float* b, float* ws, const Conv2dParams& p) {
  if (portable_is_better(p)) return false;
  const Bf16Geom g = bf16_geom(p);
  const int NV = conv_nv(p.K, 16), KB = NV * 16;
  float* wpf = ws + int64_t(get_num_threads() > 1 ? get_num_threads() : 1) * g.img;
  bf16_t* wp = reinterpret_cast<bf16_t*>(wpf);
  float* bp = wpf + round_up(int64_t(p.R) * p.S * (g.Ce / 2) * round_up(p.K, KB), 16);
  bf16_pack_weights(wp, bp, w, b, p.R, p.S, p.C, p.K, KB, false);
  bf16_fwd_packed(y, x, wp, bp, p, ws, NV, false);
  return true;
}

bool conv2d_backward_data(float* dx, const float* dy, const float* w, float* ws, const Conv2dParams& p,
                          bool accumulate) {
  Conv2dParams q;
  if (portable_is_better(p)) return false;
  if (!bwd_data_as_forward(p, &q)) {
    if (!bwd_by_phases(p)) return false;  // strides of 5 and more: the emulated gather kernel
    bf16_bwd_phases(dx, dy, w, ws, p, accumulate, get_num_threads());
    return true;
  }
  q.relu = 0;
  const Bf16Geom g = bf16_geom(q);
  const int NV = conv_nv(q.K, 16), KB = NV * 16;
  bf16_t* wp = reinterpret_cast<bf16_t*>(ws + int64_t(get_num_threads() > 1 ? get_num_threads() : 1) * g.img);
  bf16_pack_weights(wp, nullptr, w, nullptr, p.R, p.S, p.C, p.K, KB, true);
  bf16_fwd_packed(dx, dy, wp, nullptr, q, ws, NV, accumulate);
  return true;
}

}  // namespace isa_avx512bf16
}  // namespace cnnbp
