// batchnorm, portable path (see batchnorm.h). Rows are split into fixed blocks (reduce_blocks);
// each block's rows are summed per channel in double, and the partial sums are added in block
// order, so the statistics do not depend on the thread count. The channel loop is innermost and
// contiguous, so every pass vectorises.

// ws: per-block partials, 2*C doubles per block, in units of T, then 3*C T (the backward's
// per-channel coefficients).
template <typename T>
static int64_t batchnorm_workspace(int64_t M, int C, int /*nthreads*/) {
  return int64_t(reduce_blocks(M)) * 2 * C * int64_t(sizeof(double) / sizeof(T)) + 3 * int64_t(C) + 16;
}

// Runs f(r0, r1, s1, s2) for each fixed block of rows [r0, r1) with its two zeroed rows of C
// partial sums (doubles), then adds the blocks in order into part[0, C) and part[C, 2C).
template <typename F>
static void bn_block_sums(double* part, int64_t M, int C, F&& f) {
  const int nb = reduce_blocks(M);
  parallel_blocks(nb, grain(4 * int64_t(C) * ((M + nb - 1) / nb)), [&](int b, int) {
    double* s1 = part + int64_t(b) * 2 * C;
    double* s2 = s1 + C;
    for (int c = 0; c < C; ++c) s1[c] = s2[c] = 0.0;
    f(block_begin(M, nb, b), block_begin(M, nb, b + 1), s1, s2);
  });
  for (int b = 1; b < nb; ++b)
    for (int c = 0; c < C; ++c) {
      part[c] += part[int64_t(b) * 2 * C + c];
      part[C + c] += part[int64_t(b) * 2 * C + C + c];
    }
}

// Adds f(r, c, u, v)'s two terms over rows [r0, r1) into s1[c] and s2[c], channel by channel in
// row order (the order a plain loop over rows then channels adds them). Channels go in tiles of W
// kept in local accumulators across the rows, so the compiler holds them in vector registers: a
// sum kept in memory would wait on a store and a reload every row.
template <int W, typename F>
static inline int bn_sum_tiles(int c0, int64_t r0, int64_t r1, int C, double* __restrict s1, double* __restrict s2,
                               F& f) {
  for (; c0 + W <= C; c0 += W) {
    double a1[W], a2[W];
    for (int j = 0; j < W; ++j) a1[j] = s1[c0 + j], a2[j] = s2[c0 + j];
    for (int64_t r = r0; r < r1; ++r)
      for (int j = 0; j < W; ++j) {
        double u, v;
        f(r, c0 + j, u, v);
        a1[j] += u;
        a2[j] += v;
      }
    for (int j = 0; j < W; ++j) s1[c0 + j] = a1[j], s2[c0 + j] = a2[j];
  }
  return c0;
}

// Rows go in runs of about 2048 values, so that the tiles after the first find the run's inputs
// in the L1 cache.
template <typename F>
static inline void bn_sum_rows(int64_t r0, int64_t r1, int C, double* __restrict s1, double* __restrict s2, F&& f) {
  const int64_t run = C >= 2048 ? 1 : 2048 / C;
  for (int64_t q0 = r0; q0 < r1; q0 += run) {
    const int64_t q1 = lmin(r1, q0 + run);
    int c0 = bn_sum_tiles<16>(0, q0, q1, C, s1, s2, f);
    c0 = bn_sum_tiles<8>(c0, q0, q1, C, s1, s2, f);
    c0 = bn_sum_tiles<4>(c0, q0, q1, C, s1, s2, f);
    bn_sum_tiles<1>(c0, q0, q1, C, s1, s2, f);
  }
}

// x: [M,C]  mean, var: [C]
// One pass: per channel, sums of d = x - x[0] and of d*d (the shift by the first row keeps the
// variance free of cancellation when the mean is large against the spread), in double.
template <typename T>
static void batchnorm_stats(T* mean, T* var, const T* x, int64_t M, int C, T* ws) {
  if (M == 0) {  // an empty batch: no row to shift by (x[0] does not exist), statistics 0
    for (int c = 0; c < C; ++c) mean[c] = var[c] = T(0);
    return;
  }
  double* part = reinterpret_cast<double*>(ws);
  bn_block_sums(part, M, C, [&](int64_t r0, int64_t r1, double* s1, double* s2) {
    bn_sum_rows(r0, r1, C, s1, s2, [x, C](int64_t r, int c, double& u, double& v) {
      const double d = double(x[r * C + c]) - double(x[c]);
      u = d;
      v = d * d;
    });
  });
  for (int c = 0; c < C; ++c) {
    const double m = part[c] / double(M), v = part[C + c] / double(M) - m * m;
    mean[c] = T(double(x[c]) + m);
    var[c] = T(v > 0.0 ? v : 0.0);
  }
}

// x, y, add: [M,C]  scale, shift: [C] (shift may be null: 0; add may be null: none); y may be x
// or add. add: a residual summed after the affine map (the Add after a BatchNormalization, the
// same rounding as the two layers apart: the normalised value is rounded, then added).
template <typename T, bool Shift, bool Add, bool Relu>
static void bn_apply_rows(T* y, const T* x, const T* scale, const T* shift, const T* add, int64_t M, int C) {
  parallel_for(M, grain(int64_t(C)), [=](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xp = x + r * C;
      const T* ap = Add ? add + r * C : nullptr;
      T* yp = y + r * C;
      CNNBP_NO_LOOP_DEPS
      for (int c = 0; c < C; ++c) {
        T v = Shift ? xp[c] * scale[c] + shift[c] : xp[c] * scale[c];
        if constexpr (Add) v = v + ap[c];  // (rounded apart: the two layers' own roundings)
        yp[c] = Relu ? (v < T(0) ? T(0) : v) : v;
      }
    }
  });
}

template <typename T>
static void batchnorm_apply(T* y, const T* x, const T* scale, const T* shift, const T* add, int64_t M, int C,
                            bool relu) {
#define CNNBP_BN_APPLY(s, a)                                                         \
  (relu ? bn_apply_rows<T, s, a, true>(y, x, scale, shift, add, M, C)                 \
        : bn_apply_rows<T, s, a, false>(y, x, scale, shift, add, M, C))
  if (shift) {
    if (add) CNNBP_BN_APPLY(true, true);
    else CNNBP_BN_APPLY(true, false);
  } else {
    if (add) CNNBP_BN_APPLY(false, true);
    else CNNBP_BN_APPLY(false, false);
  }
#undef CNNBP_BN_APPLY
}

// dy, x, dx: [M,C]  mean, invstd, gamma: [C] (gamma null: 1)  dgamma, dbeta: [C] or null.
// batch_stats false: mean and invstd were constants of the forward pass (the moving statistics),
// so dx = dy * gamma * invstd. A forward that fused ReLU: the incoming gradient is dy where the
// output was positive and 0 elsewhere (ReLU's backward, read in both passes), known from the
// output y when it is given, else from x * rscale + rshift (+ radd, the residual the forward
// added) > 0: the forward's own map, the expression batchnorm_apply evaluates, so the same sign
// bit for bit. dres (may be null): the residual's gradient, the masked dy (the Add's backward),
// added into it when dres_acc.
enum class BnRelu { none, from_y, from_x, from_x_add };

template <typename T, BnRelu R>
static inline T bn_dy(const T* dp, const T* yp, const T* xp, const T* ap, const T* rs, const T* rb, int c) {
  // ReLU's backward as the Activation layer computes it: a multiply, so that NaN propagates.
  if constexpr (R == BnRelu::from_y) return dp[c] * (yp[c] > T(0) ? T(1) : T(0));
  if constexpr (R == BnRelu::from_x) return dp[c] * (xp[c] * rs[c] + rb[c] > T(0) ? T(1) : T(0));
  if constexpr (R == BnRelu::from_x_add) {
    T v = xp[c] * rs[c] + rb[c];
    v = v + ap[c];
    return dp[c] * (v > T(0) ? T(1) : T(0));
  }
  (void)yp; (void)xp; (void)ap; (void)rs; (void)rb;
  return dp[c];
}

template <typename T, BnRelu R>
static void batchnorm_backward_impl(T* dx, T* dgamma, T* dbeta, const T* dy, const T* y, const T* rscale,
                                    const T* rshift, const T* radd, T* dres, bool dres_acc, const T* x,
                                    const T* mean, const T* invstd, const T* gamma, int64_t M, int C,
                                    bool batch_stats, T* ws, bool accumulate) {
  double* part = reinterpret_cast<double*>(ws);
  const bool need_sums = batch_stats || dgamma || dbeta;
  if (need_sums) {
    // sdy: sum dy; sdx: sum dy * (x - mean)
    bn_block_sums(part, M, C, [&](int64_t r0, int64_t r1, double* sdy, double* sdx) {
      bn_sum_rows(r0, r1, C, sdy, sdx, [&](int64_t r, int c, double& u, double& v) {
        const T* xp = x + r * C;
        const T* yp = R == BnRelu::from_y ? y + r * C : nullptr;
        const T* ap = R == BnRelu::from_x_add ? radd + r * C : nullptr;
        const double d = double(bn_dy<T, R>(dy + r * C, yp, xp, ap, rscale, rshift, c));
        u = d;
        v = d * (double(xp[c]) - double(mean[c]));
      });
    });
    // part[0..2C) now holds sum(dy) and sum(dy*(x-mean)); the latter becomes sum(dy*xhat).
    for (int c = 0; c < C; ++c) {
      const double a = part[c];
      part[C + c] *= double(invstd[c]);
      if (dbeta) dbeta[c] = T(a);
      if (dgamma) dgamma[c] = T(part[C + c]);
    }
  }
  if (!dx && !dres) return;
  // dx = k*(dy - sum(dy)/M - xhat*sum(dy*xhat)/M), k = gamma*invstd, is affine in (dy, x) per
  // channel: dx = A*dy + B + X*x, with the coefficients computed once (in double) per channel.
  T* A = reinterpret_cast<T*>(part + int64_t(reduce_blocks(M)) * 2 * C);
  T* B = A + C;
  T* X = B + C;
  for (int c = 0; c < C; ++c) {
    const double k = (gamma ? double(gamma[c]) : 1.0) * double(invstd[c]);
    A[c] = T(k);
    if (batch_stats) {
      const double q = k * double(invstd[c]) * part[C + c] / double(M);  // k * invstd * sum(dy*xhat) / M
      B[c] = T(-k * part[c] / double(M) + q * double(mean[c]));
      X[c] = T(-q);
    } else {
      B[c] = X[c] = T(0);
    }
  }
  parallel_for(M, grain(int64_t(C)), [=](int64_t r0, int64_t r1, int) {
    const T* __restrict a = A;
    const T* __restrict b = B;
    const T* __restrict xc = X;
    const T* __restrict rs = rscale;
    const T* __restrict rb = rshift;
    for (int64_t r = r0; r < r1; ++r) {
      const T* xp = x + r * C;
      const T* dp = dy + r * C;
      const T* yp = R == BnRelu::from_y ? y + r * C : nullptr;
      const T* ap = R == BnRelu::from_x_add ? radd + r * C : nullptr;
      // (No iteration depends on another, even were an output one of the inputs.)
      if (dres) {
        T* g = dres + r * C;
        if (dres_acc) {
          CNNBP_NO_LOOP_DEPS
          for (int c = 0; c < C; ++c) g[c] += bn_dy<T, R>(dp, yp, xp, ap, rs, rb, c);
        } else {
          CNNBP_NO_LOOP_DEPS
          for (int c = 0; c < C; ++c) g[c] = bn_dy<T, R>(dp, yp, xp, ap, rs, rb, c);
        }
      }
      if (!dx) continue;
      T* o = dx + r * C;
      if (accumulate) {
        CNNBP_NO_LOOP_DEPS
        for (int c = 0; c < C; ++c) o[c] += a[c] * bn_dy<T, R>(dp, yp, xp, ap, rs, rb, c) + b[c] + xc[c] * xp[c];
      } else {
        CNNBP_NO_LOOP_DEPS
        for (int c = 0; c < C; ++c) o[c] = a[c] * bn_dy<T, R>(dp, yp, xp, ap, rs, rb, c) + b[c] + xc[c] * xp[c];
      }
    }
  });
}

// y, rscale/rshift(/radd): see bn_dy (y wins when given; all null: no ReLU).
template <typename T>
static void batchnorm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* y, const T* rscale,
                               const T* rshift, const T* radd, T* dres, bool dres_acc, const T* x, const T* mean,
                               const T* invstd, const T* gamma, int64_t M, int C, bool batch_stats, T* ws,
                               bool accumulate) {
#define CNNBP_BN_BWD(mode)                                                                                         \
  batchnorm_backward_impl<T, mode>(dx, dgamma, dbeta, dy, y, rscale, rshift, radd, dres, dres_acc, x, mean, invstd, \
                                   gamma, M, C, batch_stats, ws, accumulate)
  if (y) CNNBP_BN_BWD(BnRelu::from_y);
  else if (rscale && rshift && radd) CNNBP_BN_BWD(BnRelu::from_x_add);
  else if (rscale && rshift) CNNBP_BN_BWD(BnRelu::from_x);
  else CNNBP_BN_BWD(BnRelu::none);
#undef CNNBP_BN_BWD
}
