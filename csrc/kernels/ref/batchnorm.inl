// batchnorm, portable path (see batchnorm.h). Rows are split into one contiguous range per
// thread; each thread sums its rows per channel in double, and the partial sums are added in
// thread order. The channel loop is innermost and contiguous, so every pass vectorises.

// ws: per-thread partials, 2*C doubles per thread, in units of T.
template <typename T>
static int64_t batchnorm_workspace(int64_t M, int C, int nthreads) {
  (void)M;
  return int64_t(nthreads < 1 ? 1 : nthreads) * 2 * C * int64_t(sizeof(double) / sizeof(T)) + 16;
}

static inline int bn_threads(int64_t M, int C) { return threads_for(M, grain(4 * int64_t(C))); }

// x: [M,C]  mean, var: [C]
template <typename T>
static void batchnorm_stats(T* mean, T* var, const T* x, int64_t M, int C, T* ws) {
  double* part = reinterpret_cast<double*>(ws);
  const int nt = bn_threads(M, C);
  parallel_region(nt, [&](int tid, int nth) {
    const int64_t r0 = M * tid / nth, r1 = M * (tid + 1) / nth;
    double* s = part + int64_t(tid) * 2 * C;
    for (int c = 0; c < C; ++c) s[c] = 0.0;
    for (int64_t r = r0; r < r1; ++r) {
      const T* xp = x + r * C;
      for (int c = 0; c < C; ++c) s[c] += double(xp[c]);
    }
  });
  for (int c = 0; c < C; ++c) {
    double t = 0.0;
    for (int i = 0; i < nt; ++i) t += part[int64_t(i) * 2 * C + c];
    mean[c] = T(t / double(M));
  }
  parallel_region(nt, [&](int tid, int nth) {
    const int64_t r0 = M * tid / nth, r1 = M * (tid + 1) / nth;
    double* s = part + int64_t(tid) * 2 * C + C;
    for (int c = 0; c < C; ++c) s[c] = 0.0;
    for (int64_t r = r0; r < r1; ++r) {
      const T* xp = x + r * C;
      for (int c = 0; c < C; ++c) {
        const double d = double(xp[c]) - double(mean[c]);
        s[c] += d * d;
      }
    }
  });
  for (int c = 0; c < C; ++c) {
    double t = 0.0;
    for (int i = 0; i < nt; ++i) t += part[int64_t(i) * 2 * C + C + c];
    var[c] = T(t / double(M));
  }
}

// x, y: [M,C]  scale, shift: [C] (shift may be null: 0); y may be x
template <typename T>
static void batchnorm_apply(T* y, const T* x, const T* scale, const T* shift, int64_t M, int C, bool relu) {
  parallel_for(M, grain(int64_t(C)), [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xp = x + r * C;
      T* yp = y + r * C;
      if (shift) {
        for (int c = 0; c < C; ++c) yp[c] = xp[c] * scale[c] + shift[c];
      } else {
        for (int c = 0; c < C; ++c) yp[c] = xp[c] * scale[c];
      }
      if (relu)
        for (int c = 0; c < C; ++c) yp[c] = yp[c] < T(0) ? T(0) : yp[c];
    }
  });
}

// dy, x, dx: [M,C]  mean, invstd, gamma: [C] (gamma null: 1)  dgamma, dbeta: [C] or null.
// batch_stats false: mean and invstd were constants of the forward pass (the moving statistics),
// so dx = dy * gamma * invstd.
template <typename T>
static void batchnorm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* mean, const T* invstd,
                               const T* gamma, int64_t M, int C, bool batch_stats, T* ws, bool accumulate) {
  double* part = reinterpret_cast<double*>(ws);
  const int nt = bn_threads(M, C);
  parallel_region(nt, [&](int tid, int nth) {
    const int64_t r0 = M * tid / nth, r1 = M * (tid + 1) / nth;
    double* sdy = part + int64_t(tid) * 2 * C;
    double* sdx = sdy + C;  // sum dy * (x - mean)
    for (int c = 0; c < C; ++c) sdy[c] = sdx[c] = 0.0;
    for (int64_t r = r0; r < r1; ++r) {
      const T* xp = x + r * C;
      const T* dp = dy + r * C;
      for (int c = 0; c < C; ++c) {
        sdy[c] += double(dp[c]);
        sdx[c] += double(dp[c]) * (double(xp[c]) - double(mean[c]));
      }
    }
  });
  // Reduced in thread order; part[0..2C) then holds sum(dy) and sum(dy*xhat) per channel.
  for (int c = 0; c < C; ++c) {
    double a = 0.0, b = 0.0;
    for (int i = 0; i < nt; ++i) {
      a += part[int64_t(i) * 2 * C + c];
      b += part[int64_t(i) * 2 * C + C + c];
    }
    part[c] = a;
    part[C + c] = b * double(invstd[c]);
    if (dbeta) dbeta[c] = T(a);
    if (dgamma) dgamma[c] = T(part[C + c]);
  }
  if (!dx) return;
  parallel_for(M, grain(int64_t(C)), [&](int64_t r0, int64_t r1, int) {
    const double invM = 1.0 / double(M);
    for (int64_t r = r0; r < r1; ++r) {
      const T* xp = x + r * C;
      const T* dp = dy + r * C;
      T* o = dx + r * C;
      for (int c = 0; c < C; ++c) {
        const T g = gamma ? gamma[c] : T(1);
        const T k = g * invstd[c];
        const T xhat = (xp[c] - mean[c]) * invstd[c];
        const T v = batch_stats ? k * (dp[c] - T(part[c] * invM) - xhat * T(part[C + c] * invM)) : k * dp[c];
        o[c] = accumulate ? o[c] + v : v;
      }
    }
  });
}
