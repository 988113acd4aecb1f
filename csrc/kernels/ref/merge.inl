// merge, portable path (see merge.h): elementwise over contiguous chunks, parallel over rows
// for the channel-slice and window copies.

// One chunk [i0, i1) of merge_forward.
template <typename T>
static inline void merge_chunk(T* y, const T* const* xs, int k, int64_t i0, int64_t i1, MergeOp op) {
  const T* a = xs[0];
  const T* b = xs[1];
  switch (op) {
    case MergeOp::subtract:
      for (int64_t i = i0; i < i1; ++i) y[i] = a[i] - b[i];
      return;
    case MergeOp::multiply:
      for (int64_t i = i0; i < i1; ++i) y[i] = a[i] * b[i];
      for (int j = 2; j < k; ++j)
        for (int64_t i = i0; i < i1; ++i) y[i] *= xs[j][i];
      return;
    case MergeOp::maximum:
      // NaN propagates: a NaN input is taken and then kept.
      for (int64_t i = i0; i < i1; ++i) y[i] = (b[i] > a[i] || b[i] != b[i]) ? b[i] : a[i];
      for (int j = 2; j < k; ++j)
        for (int64_t i = i0; i < i1; ++i) {
          const T v = xs[j][i];
          y[i] = ((v > y[i] || v != v) && y[i] == y[i]) ? v : y[i];
        }
      return;
    default:  // add, average
      for (int64_t i = i0; i < i1; ++i) y[i] = a[i] + b[i];
      for (int j = 2; j < k; ++j)
        for (int64_t i = i0; i < i1; ++i) y[i] += xs[j][i];
      if (op == MergeOp::average) {
        const T inv = T(1) / T(k);
        for (int64_t i = i0; i < i1; ++i) y[i] *= inv;
      }
  }
}

// xs: k pointers to [n]  y: [n]; y may be one of xs. relu: y = max(merge, 0), applied to each
// chunk while it is in cache (not for maximum, whose backward compares inputs with y).
template <typename T>
static void merge_forward(T* y, const T* const* xs, int k, int64_t n, MergeOp op, bool relu) {
  parallel_for(n, kMinWork, [&](int64_t i0, int64_t i1, int) {
    if (!relu) {
      merge_chunk(y, xs, k, i0, i1, op);
      return;
    }
    for (int64_t b0 = i0; b0 < i1; b0 += 4096) {  // blocks that stay in L1 between the two loops
      const int64_t b1 = b0 + 4096 < i1 ? b0 + 4096 : i1;
      merge_chunk(y, xs, k, b0, b1, op);
      // written so that NaN propagates (NaN < 0 is false), as the Activation layer
      for (int64_t i = b0; i < b1; ++i) y[i] = y[i] < T(0) ? T(0) : y[i];
    }
  });
}

// dy, y, dx: [n]  xs: the k inputs of the forward pass; dx = d y / d xs[which] * dy. relu: the
// forward applied ReLU (add, subtract, average only): dy counts where y > 0.
template <typename T>
static void merge_backward(T* dx, const T* dy, const T* const* xs, const T* y, int k, int which, int64_t n,
                           MergeOp op, bool accumulate, bool relu) {
  parallel_for(n, kMinWork, [&](int64_t i0, int64_t i1, int) {
    switch (op) {
      case MergeOp::add:
      case MergeOp::average:
      case MergeOp::subtract: {
        const T s = op == MergeOp::average ? T(1) / T(k) : (op == MergeOp::subtract && which == 1 ? T(-1) : T(1));
        if (relu) {  // ReLU's backward as the Activation layer computes it (a multiply: NaN propagates)
          if (accumulate) {
            for (int64_t i = i0; i < i1; ++i) dx[i] += s * (dy[i] * (y[i] > T(0) ? T(1) : T(0)));
          } else {
            for (int64_t i = i0; i < i1; ++i) dx[i] = s * (dy[i] * (y[i] > T(0) ? T(1) : T(0)));
          }
          return;
        }
        if (accumulate) {
          for (int64_t i = i0; i < i1; ++i) dx[i] += s * dy[i];
        } else if (s == T(1)) {
          for (int64_t i = i0; i < i1; ++i) dx[i] = dy[i];
        } else {
          for (int64_t i = i0; i < i1; ++i) dx[i] = s * dy[i];
        }
        return;
      }
      case MergeOp::multiply:
        for (int64_t i = i0; i < i1; ++i) {
          T p = relu ? dy[i] * (y[i] > T(0) ? T(1) : T(0)) : dy[i];
          for (int j = 0; j < k; ++j)
            if (j != which) p *= xs[j][i];
          dx[i] = accumulate ? dx[i] + p : p;
        }
        return;
      case MergeOp::maximum:
        for (int64_t i = i0; i < i1; ++i) {
          // The gradient goes to the first input equal to the output.
          int first = k;
          for (int j = k - 1; j >= 0; --j)
            if (xs[j][i] == y[i]) first = j;
          const T v = first == which ? dy[i] : T(0);
          dx[i] = accumulate ? dx[i] + v : v;
        }
        return;
    }
  });
}

// x: [M,Ci]  y: [M,Ctot], columns [off, off+Ci)
template <typename T>
static void concat_forward(T* y, const T* x, int64_t M, int Ci, int Ctot, int off) {
  parallel_for(M, grain(int64_t(Ci)), [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xp = x + r * Ci;
      T* yp = y + r * Ctot + off;
      for (int c = 0; c < Ci; ++c) yp[c] = xp[c];
    }
  });
}

// dy: [M,Ctot]  dx: [M,Ci] (+)= columns [off, off+Ci) of dy
template <typename T>
static void concat_backward(T* dx, const T* dy, int64_t M, int Ci, int Ctot, int off, bool accumulate) {
  parallel_for(M, grain(int64_t(Ci)), [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* dp = dy + r * Ctot + off;
      T* o = dx + r * Ci;
      if (accumulate) for (int c = 0; c < Ci; ++c) o[c] += dp[c];
      else for (int c = 0; c < Ci; ++c) o[c] = dp[c];
    }
  });
}

// big: [N,H,W,C]  small: [N,h,w,C] = big[:, top:top+h, left:left+w, :]
template <typename T>
static void window_to_small(T* small, const T* big, int N, int H, int W, int h, int w, int C, int top, int left,
                            bool accumulate) {
  const int64_t row = int64_t(w) * C;
  parallel_for(int64_t(N) * h, grain(row), [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / h, i = r % h;
      const T* src = big + ((n * H + top + i) * W + left) * C;
      T* dst = small + r * row;
      if (accumulate) for (int64_t j = 0; j < row; ++j) dst[j] += src[j];
      else for (int64_t j = 0; j < row; ++j) dst[j] = src[j];
    }
  });
}

// big[:, top:top+h, left:left+w, :] (+)= small; without accumulate the rest of big is zeroed
template <typename T>
static void window_to_big(T* big, const T* small, int N, int H, int W, int h, int w, int C, int top, int left,
                          bool accumulate) {
  const int64_t brow = int64_t(W) * C, srow = int64_t(w) * C;
  parallel_for(int64_t(N) * H, grain(brow), [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / H, i = r % H - top;
      T* dst = big + r * brow;
      const bool inside = i >= 0 && i < h;
      if (!accumulate) {
        const int64_t a = inside ? int64_t(left) * C : brow, b = inside ? int64_t(left + w) * C : brow;
        for (int64_t j = 0; j < a; ++j) dst[j] = T(0);
        for (int64_t j = b; j < brow; ++j) dst[j] = T(0);
      }
      if (!inside) continue;
      const T* src = small + (n * h + i) * srow;
      T* d = dst + int64_t(left) * C;
      if (accumulate) for (int64_t j = 0; j < srow; ++j) d[j] += src[j];
      else for (int64_t j = 0; j < srow; ++j) d[j] = src[j];
    }
  });
}

// y (+)= x: [n] (the sum of gradients of a tensor with several consumers)
template <typename T>
static void add_into(T* y, const T* x, int64_t n) {
  parallel_for(n, kMinWork, [&](int64_t i0, int64_t i1, int) {
    for (int64_t i = i0; i < i1; ++i) y[i] += x[i];
  });
}

// x: [N, d0..d{r-1}], y: [N, d_perm[0]..d_perm[r-1]]; rank r <= 4. accumulate adds into y.
template <typename T>
static void permute(T* y, const T* x, int N, int rank, const int* dims, const int* perm, bool accumulate) {
  int64_t stride[4] = {1, 1, 1, 1}, out_dims[4] = {1, 1, 1, 1}, in_stride_of_out[4] = {0, 0, 0, 0};
  for (int j = rank - 2; j >= 0; --j) stride[j] = stride[j + 1] * dims[j + 1];
  int64_t per = 1;
  for (int j = 0; j < rank; ++j) {
    out_dims[j] = dims[perm[j]];
    in_stride_of_out[j] = stride[perm[j]];
    per *= dims[j];
  }
  parallel_for(N, grain(per), [&](int64_t n0, int64_t n1, int) {
    for (int64_t n = n0; n < n1; ++n) {
      const T* xn = x + n * per;
      T* yn = y + n * per;
      int64_t i = 0;
      for (int64_t a = 0; a < out_dims[0]; ++a)
        for (int64_t b = 0; b < out_dims[1]; ++b)
          for (int64_t c = 0; c < out_dims[2]; ++c) {
            const int64_t base = a * in_stride_of_out[0] + b * in_stride_of_out[1] + c * in_stride_of_out[2];
            for (int64_t d = 0; d < out_dims[3]; ++d, ++i) {
              const T v = xn[base + d * in_stride_of_out[3]];
              yn[i] = accumulate ? yn[i] + v : v;
            }
          }
    }
  });
}

// y: [M, C] += b
template <typename T>
static void channel_bias_add(T* y, const T* b, int64_t M, int C) {
  parallel_for(M, grain(C), [&](int64_t m0, int64_t m1, int) {
    for (int64_t m = m0; m < m1; ++m)
      for (int c = 0; c < C; ++c) y[m * C + c] += b[c];
  });
}

// db[c] = sum over the M rows of dy[m, c], in double, serial (the same for every thread count)
template <typename T>
static void channel_bias_grad(T* db, const T* dy, int64_t M, int C) {
  for (int c = 0; c < C; ++c) db[c] = T(0);
  constexpr int kBlock = 256;
  double acc[kBlock];
  for (int c0 = 0; c0 < C; c0 += kBlock) {
    const int cn = C - c0 < kBlock ? C - c0 : kBlock;
    for (int c = 0; c < cn; ++c) acc[c] = 0.0;
    for (int64_t m = 0; m < M; ++m) {
      const T* r = dy + m * C + c0;
      for (int c = 0; c < cn; ++c) acc[c] += double(r[c]);
    }
    for (int c = 0; c < cn; ++c) db[c0 + c] = T(acc[c]);
  }
}
