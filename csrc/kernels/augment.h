// augment: the kernels of the image preprocessing layers (nn/preprocessing.cpp) over NHWC batches.
// The random draws are made by the layers (one set per sample, from (seed, step, sample)); these
// kernels apply what was drawn, deterministically and independently of the thread count.
//   warp:     y[n, i, j, c] = x[n] read at the source point (u, v) = A_n (j, i, 1) of output pixel
//             (row i, column j), A_n = mats[6n .. 6n+6) = [a0 a1 a2; b0 b1 b2] (u = a0 j + a1 i + a2,
//             v = b0 j + b1 i + b2; pixel centres at integer coordinates). bilinear: the four
//             pixels around (u, v) weighted by the fractions; nearest: the pixel at
//             (floor(u + 1/2), floor(v + 1/2)). A pixel outside the image is the fill value
//             (constant) or the pixel reached by the fill mode's map of its integer coordinate k
//             on an axis of size L: reflect (d c b a | a b c d | d c b a), wrap (a b c d | a b c d),
//             nearest (a a a a | a b c d | d d d d).
//             backward adds each output gradient to the pixels it was read from, with the same
//             weights (accumulate: into dx, else dx is overwritten); fill values get none.
//   contrast: per sample and channel, y = clip((x - mean) * f_n + mean, lo, hi), mean over the
//             sample's M pixels of that channel. backward: with m = (lo < y < hi),
//             dx_i = f m_i dy_i + (1 - f) / M * sum_j m_j dy_j.
//   shift:    y = clip(x + delta_n, lo, hi) (brightness); backward dx = dy * (lo < y < hi).
//   erase:    y = x, except the box [top, top + h) x [left, left + w) of each sample, set to value
//             (boxes[4n .. 4n+4) = top, left, h, w; h = 0: no box). Its backward is the same
//             kernel with value 0 applied to dy.
#pragma once
#include <cstdint>

namespace cnnbp {

enum class FillMode : int { constant = 0, reflect = 1, wrap = 2, nearest = 3 };

struct WarpParams {
  int N, H, W, C;    // input [N, H, W, C]
  int Ho, Wo;        // output [N, Ho, Wo, C]
  bool bilinear;
  FillMode fill;
  double fill_value;
};

}  // namespace cnnbp
