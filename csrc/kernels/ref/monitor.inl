// monitor: see kernels/monitor.h. Fixed lanes of independent accumulators, so that the compiler
// vectorises the loops at each ISA's width without reassociating any one sum.

constexpr int kMonLanes = 16;
constexpr int64_t kMonBlock = 64 * kMonLanes;  // elements per block: 64 per lane

template <typename T>
void tensor_stats(double* out, const T* y, int64_t n) {
  double s = 0, q = 0;
  int64_t z = 0, lo = 0, hi = 0;
  for (int64_t b = 0; b < n; b += kMonBlock) {
    const int64_t e = std::min(n, b + kMonBlock);
    T ls[kMonLanes] = {}, lq[kMonLanes] = {};
    int32_t lz[kMonLanes] = {}, llo[kMonLanes] = {}, lhi[kMonLanes] = {};
    int64_t i = b;
    for (; i + kMonLanes <= e; i += kMonLanes)
      for (int j = 0; j < kMonLanes; ++j) {
        const T v = y[i + j], a = v < T(0) ? -v : v;
        ls[j] += v;
        lq[j] += v * v;
        lz[j] += v == T(0);
        llo[j] += a <= T(0.01);
        lhi[j] += a >= T(0.99);
      }
    for (int j = 0; i < e; ++i, ++j) {
      const T v = y[i], a = v < T(0) ? -v : v;
      ls[j] += v;
      lq[j] += v * v;
      lz[j] += v == T(0);
      llo[j] += a <= T(0.01);
      lhi[j] += a >= T(0.99);
    }
    for (int j = 0; j < kMonLanes; ++j) {
      s += double(ls[j]);
      q += double(lq[j]);
      z += lz[j];
      lo += llo[j];
      hi += lhi[j];
    }
  }
  out[0] = double(n);
  out[1] = s;
  out[2] = q;
  out[3] = double(z);
  out[4] = double(lo);
  out[5] = double(hi);
}

template <typename T>
void param_norms(double* out, const T* w, const T* g, const T* w0, int64_t n) {
  double sw = 0, sg = 0, sd = 0;
  for (int64_t b = 0; b < n; b += kMonBlock) {
    const int64_t e = std::min(n, b + kMonBlock);
    T lw[kMonLanes] = {}, lg[kMonLanes] = {}, ld[kMonLanes] = {};
    int64_t i = b;
    for (; i + kMonLanes <= e; i += kMonLanes)
      for (int j = 0; j < kMonLanes; ++j) {
        const T wv = w[i + j], gv = g[i + j], dv = wv - w0[i + j];
        lw[j] += wv * wv;
        lg[j] += gv * gv;
        ld[j] += dv * dv;
      }
    for (int j = 0; i < e; ++i, ++j) {
      const T wv = w[i], gv = g[i], dv = wv - w0[i];
      lw[j] += wv * wv;
      lg[j] += gv * gv;
      ld[j] += dv * dv;
    }
    for (int j = 0; j < kMonLanes; ++j) {
      sw += double(lw[j]);
      sg += double(lg[j]);
      sd += double(ld[j]);
    }
  }
  out[0] = sw;
  out[1] = sg;
  out[2] = sd;
}
