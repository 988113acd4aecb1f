// UpSampling2D (resize.h), portable path: parallel over output rows forward, over images backward
// (an input pixel receives from several output pixels of its own image only).

// The two source positions of output index o along an axis of n inputs upsampled by f, and the
// weight of the second (TensorFlow's half-pixel rule).
static inline void resize_taps(int o, int f, int n, int* a, int* b, double* t) {
  const double s = (o + 0.5) / f - 0.5;
  const double fl = __builtin_floor(s);
  const int lo = int(fl), hi = int(__builtin_ceil(s));
  *a = lo < 0 ? 0 : lo;
  *b = hi > n - 1 ? n - 1 : hi;
  *t = s - fl;
}

// x: [N,H,W,C], y: [N,H*sh,W*sw,C]
template <typename T>
static void resize_forward(T* y, const T* x, const ResizeParams& p) {
  const int P = p.H * p.sh, Q = p.W * p.sw, C = p.C;
  parallel_for(int64_t(p.N) * P, grain(int64_t(Q) * C), [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const int n = int(r / P), oh = int(r % P);
      const T* xn = x + int64_t(n) * p.H * p.W * C;
      T* yr = y + r * Q * C;
      if (!p.bilinear) {
        const T* xr = xn + int64_t(oh / p.sh) * p.W * C;
        for (int ow = 0; ow < Q; ++ow) {
          const T* xs = xr + int64_t(ow / p.sw) * C;
          for (int c = 0; c < C; ++c) yr[int64_t(ow) * C + c] = xs[c];
        }
        continue;
      }
      int h0, h1;
      double th;
      resize_taps(oh, p.sh, p.H, &h0, &h1, &th);
      const T* x0 = xn + int64_t(h0) * p.W * C;
      const T* x1 = xn + int64_t(h1) * p.W * C;
      for (int ow = 0; ow < Q; ++ow) {
        int w0, w1;
        double tw;
        resize_taps(ow, p.sw, p.W, &w0, &w1, &tw);
        const T a = T((1 - th) * (1 - tw)), b = T((1 - th) * tw), c2 = T(th * (1 - tw)), d = T(th * tw);
        const T *p00 = x0 + int64_t(w0) * C, *p01 = x0 + int64_t(w1) * C, *p10 = x1 + int64_t(w0) * C,
                *p11 = x1 + int64_t(w1) * C;
        T* yo = yr + int64_t(ow) * C;
        for (int c = 0; c < C; ++c) yo[c] = a * p00[c] + b * p01[c] + c2 * p10[c] + d * p11[c];
      }
    }
  });
}

// dy: [N,H*sh,W*sw,C], dx: [N,H,W,C]
template <typename T>
static void resize_backward(T* dx, const T* dy, const ResizeParams& p, bool accumulate) {
  const int P = p.H * p.sh, Q = p.W * p.sw, C = p.C;
  const int64_t in_img = int64_t(p.H) * p.W * C, out_img = int64_t(P) * Q * C;
  parallel_for(p.N, grain(out_img), [&](int64_t n0, int64_t n1, int) {
    for (int64_t n = n0; n < n1; ++n) {
      T* dxn = dx + n * in_img;
      const T* dyn = dy + n * out_img;
      if (!accumulate)
        for (int64_t i = 0; i < in_img; ++i) dxn[i] = T(0);
      for (int oh = 0; oh < P; ++oh) {
        const T* dr = dyn + int64_t(oh) * Q * C;
        if (!p.bilinear) {
          T* xr = dxn + int64_t(oh / p.sh) * p.W * C;
          for (int ow = 0; ow < Q; ++ow) {
            T* xs = xr + int64_t(ow / p.sw) * C;
            const T* g = dr + int64_t(ow) * C;
            for (int c = 0; c < C; ++c) xs[c] += g[c];
          }
          continue;
        }
        int h0, h1;
        double th;
        resize_taps(oh, p.sh, p.H, &h0, &h1, &th);
        T* x0 = dxn + int64_t(h0) * p.W * C;
        T* x1 = dxn + int64_t(h1) * p.W * C;
        for (int ow = 0; ow < Q; ++ow) {
          int w0, w1;
          double tw;
          resize_taps(ow, p.sw, p.W, &w0, &w1, &tw);
          const T a = T((1 - th) * (1 - tw)), b = T((1 - th) * tw), c2 = T(th * (1 - tw)), d = T(th * tw);
          const T* g = dr + int64_t(ow) * C;
          for (int c = 0; c < C; ++c) {
            x0[int64_t(w0) * C + c] += a * g[c];
            x0[int64_t(w1) * C + c] += b * g[c];
            x1[int64_t(w0) * C + c] += c2 * g[c];
            x1[int64_t(w1) * C + c] += d * g[c];
          }
        }
      }
    }
  });
}
