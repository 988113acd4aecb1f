// Shape arithmetic and validation for the kernel families (baseline code, outside the ISA objects).
#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <limits>

#include "core/check.h"
#include "core/parallel.h"
#include "kernels/conv2d.h"
#include "kernels/pool2d.h"

namespace cnnbp {

void same_padding(int in, int k, int stride, int dilation, int* before, int* after) {
  // In 64 bits: a kernel's reach (k - 1) * dilation + 1 exceeds int for large dilations; a total
  // beyond int is clamped, and make_conv2d_params then refuses the padded size. Non-positive
  // sizes get no padding (make_*_params refuses them with a message).
  *before = *after = 0;
  if (in <= 0 || k <= 0 || stride <= 0 || dilation <= 0) return;
  const int64_t out = (int64_t(in) + stride - 1) / stride;
  const int64_t eff = int64_t(k - 1) * dilation + 1;
  const int64_t total = std::min<int64_t>(std::max<int64_t>((out - 1) * stride + eff - in, 0), INT32_MAX);
  *before = int(total / 2);
  *after = int(total - total / 2);
}

namespace {
int out_size(int in, int k, int stride, int dilation, int before, int after) {
  const int64_t eff = int64_t(k - 1) * dilation + 1;
  const int64_t span = int64_t(in) + before + after - eff;
  return span < 0 ? 0 : int(span / stride + 1);
}
constexpr int64_t kMaxElems = int64_t(1) << 40;
// Whether the product of the factors (all >= 0) stays below kMaxElems, without overflowing. A
// zero factor (an empty batch) counts as 1: an image too large to index is refused even then.
bool small_product(std::initializer_list<int64_t> factors) {
  int64_t r = 1;
  for (int64_t f : factors)
    if (__builtin_mul_overflow(r, f > 0 ? f : 1, &r) || r >= kMaxElems) return false;
  return true;
}
}  // namespace

Conv2dParams make_conv2d_params(const char* who, int N, int H, int W, int C, int K, int R, int S,
                                int sh, int sw, int dh, int dw, int pt, int pb, int pl, int pr) {
  CNNBP_CHECK(N >= 0 && H > 0 && W > 0 && C > 0, who, ": expected a positive input shape (H, W, C), got (", H, ", ", W, ", ", C, ")");
  CNNBP_CHECK(K > 0, who, ": expected filters > 0, got ", K);
  CNNBP_CHECK(R > 0 && S > 0, who, ": expected a positive kernel_size, got (", R, ", ", S, ")");
  CNNBP_CHECK(sh > 0 && sw > 0, who, ": expected positive strides, got (", sh, ", ", sw, ")");
  CNNBP_CHECK(dh > 0 && dw > 0, who, ": expected positive dilation_rate, got (", dh, ", ", dw, ")");
  CNNBP_CHECK(pt >= 0 && pb >= 0 && pl >= 0 && pr >= 0, who, ": expected non-negative padding, got ((", pt, ", ", pb, "), (", pl, ", ", pr, "))");
  Conv2dParams p{N, H, W, C, K, R, S, sh, sw, dh, dw, pt, pb, pl, pr, 0, 0};
  const int64_t reach_h = int64_t(R - 1) * dh + 1, reach_w = int64_t(S - 1) * dw + 1;
  const int64_t hp = int64_t(H) + pt + pb, wp = int64_t(W) + pl + pr;
  // Only each padded extent must index with int: no kernel stores a padded image whose padding
  // dominates the data (see portable_is_better in kernels/simd/conv2d.inl).
  CNNBP_CHECK(hp <= INT32_MAX && wp <= INT32_MAX, who, ": the padded input ", hp, "x", wp,
              "x", C, " (kernel reach ", reach_h, "x", reach_w, " with dilation) is too large");
  p.P = out_size(H, R, sh, dh, pt, pb);
  p.Q = out_size(W, S, sw, dw, pl, pr);
  CNNBP_CHECK(p.P > 0 && p.Q > 0, who, ": kernel ", reach_h, "x", reach_w, " (with dilation) does not fit the padded input ",
              hp, "x", wp, " (input ", H, "x", W, ")");
  CNNBP_CHECK(small_product({N, H, W, C}) && small_product({N, p.P, p.Q, K}) && small_product({R, S, C, K}),
              who, ": shape too large: input (", N, ", ", H, ", ", W, ", ", C, "), output (", N, ", ", p.P, ", ", p.Q,
              ", ", K, "), kernel (", R, ", ", S, ", ", C, ", ", K, ")");
  return p;
}

Pool2dParams make_pool2d_params(const char* who, int N, int H, int W, int C, int R, int S, int sh,
                                int sw, int pt, int pb, int pl, int pr) {
  CNNBP_CHECK(N >= 0 && H > 0 && W > 0 && C > 0, who, ": expected a positive input shape (H, W, C), got (", H, ", ", W, ", ", C, ")");
  CNNBP_CHECK(R > 0 && S > 0, who, ": expected a positive pool_size, got (", R, ", ", S, ")");
  CNNBP_CHECK(sh > 0 && sw > 0, who, ": expected positive strides, got (", sh, ", ", sw, ")");
  CNNBP_CHECK(pt >= 0 && pb >= 0 && pl >= 0 && pr >= 0, who, ": expected non-negative padding");
  CNNBP_CHECK(pt < R && pb < R && pl < S && pr < S, who, ": padding must be smaller than the pool window");
  Pool2dParams p{N, H, W, C, R, S, sh, sw, pt, pb, pl, pr, 0, 0};
  p.P = out_size(H, R, sh, 1, pt, pb);
  p.Q = out_size(W, S, sw, 1, pl, pr);
  CNNBP_CHECK(p.P > 0 && p.Q > 0, who, ": pool window ", R, "x", S, " does not fit the input ", H, "x", W);
  CNNBP_CHECK(small_product({N, H, W, C}) && small_product({N, p.P, p.Q, C}), who, ": shape too large: input (", N, ", ",
              H, ", ", W, ", ", C, "), output (", N, ", ", p.P, ", ", p.Q, ", ", C, ")");
  return p;
}

}  // namespace cnnbp
