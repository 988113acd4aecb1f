// LayerNormalization (layernorm.h), portable path: rows in parallel; the parameter gradients by
// channel blocks, each summed over the rows in order (the same for every thread count).

// x, y: [M, C]; gamma, beta: [C] or null; mean, invstd: [M]
template <typename T>
static void layernorm_forward(T* y, T* mean, T* invstd, const T* x, const T* gamma, const T* beta, int64_t M, int C,
                              double eps) {
  parallel_for(M, grain(4 * int64_t(C)), [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * C;
      double s = 0.0;
      for (int c = 0; c < C; ++c) s += double(xr[c]);
      const double mu = s / C;
      double v = 0.0;
      for (int c = 0; c < C; ++c) {
        const double d = double(xr[c]) - mu;
        v += d * d;
      }
      const double inv = 1.0 / __builtin_sqrt(v / C + eps);
      mean[r] = T(mu);
      invstd[r] = T(inv);
      const T m = T(mu), iv = T(inv);
      T* yr = y + r * C;
      for (int c = 0; c < C; ++c)
        yr[c] = (xr[c] - m) * iv * (gamma ? gamma[c] : T(1)) + (beta ? beta[c] : T(0));
    }
  });
}

template <typename T>
static void layernorm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* mean, const T* invstd,
                               const T* gamma, int64_t M, int C, bool accumulate) {
  if (dgamma || dbeta) {
    constexpr int kBlock = 64;
    const int nb = (C + kBlock - 1) / kBlock;
    parallel_for(nb, 1, [&](int64_t b0, int64_t b1, int) {
      for (int64_t b = b0; b < b1; ++b) {
        const int c0 = int(b) * kBlock, c1 = c0 + kBlock < C ? c0 + kBlock : C;
        double sg[kBlock] = {0}, sb[kBlock] = {0};
        for (int64_t r = 0; r < M; ++r) {
          const T* xr = x + r * C;
          const T* gr = dy + r * C;
          const double m = double(mean[r]), iv = double(invstd[r]);
          for (int c = c0; c < c1; ++c) {
            sg[c - c0] += double(gr[c]) * (double(xr[c]) - m) * iv;
            sb[c - c0] += double(gr[c]);
          }
        }
        for (int c = c0; c < c1; ++c) {
          if (dgamma) dgamma[c] = T(sg[c - c0]);
          if (dbeta) dbeta[c] = T(sb[c - c0]);
        }
      }
    });
  }
  if (!dx) return;
  parallel_for(M, grain(4 * int64_t(C)), [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * C;
      const T* gr = dy + r * C;
      const double m = double(mean[r]), iv = double(invstd[r]);
      double s1 = 0.0, s2 = 0.0;
      for (int c = 0; c < C; ++c) {
        const double g = double(gr[c]) * (gamma ? double(gamma[c]) : 1.0);
        s1 += g;
        s2 += g * (double(xr[c]) - m) * iv;
      }
      s1 /= C;
      s2 /= C;
      T* d = dx + r * C;
      for (int c = 0; c < C; ++c) {
        const double g = double(gr[c]) * (gamma ? double(gamma[c]) : 1.0);
        const double v = iv * (g - s1 - (double(xr[c]) - m) * iv * s2);
        d[c] = accumulate ? T(double(d[c]) + v) : T(v);
      }
    }
  });
}
