// pool2d, portable path. Parallel over output rows (forward) and images (backward: each image's
// dx is zeroed and scattered into by one thread, so overlapping windows need no atomics).

// Channel loop of one window position: take v where it is larger, or where it is the window's
// first NaN. Unconditional selects over restrict pointers, so it vectorises (with a possibly
// aliasing int32 store in the loop, GCC reloaded the loop bound and ran it scalar).
template <typename T>
static inline void max_pool_merge(T* __restrict y, int32_t* __restrict am, const T* __restrict x, int C, int32_t pos) {
  for (int c = 0; c < C; ++c) {
    const T v = x[c], best = y[c];
    const bool take = (v > best) | ((v != v) & (best == best));
    y[c] = take ? v : best;
    am[c] = take ? pos : am[c];
  }
}
template <typename T>
static inline void max_pool_merge(T* __restrict y, const T* __restrict x, int C) {
  for (int c = 0; c < C; ++c) {
    const T v = x[c], best = y[c];
    const bool take = (v > best) | ((v != v) & (best == best));
    y[c] = take ? v : best;
  }
}

// x: [N,H,W,C]  y: [N,P,Q,C]  argmax: [N,P,Q,C] input position ih*W+iw, or null
template <typename T>
static void max_pool2d_forward(T* y, int32_t* argmax, const T* x, const Pool2dParams& p) {
  const Pool2dParams q = p;
  parallel_for(int64_t(q.N) * q.P, grain(int64_t(q.Q) * q.R * q.S * q.C), [y, argmax, x, q](int64_t r0, int64_t r1, int) {
    const int H = q.H, W = q.W, C = q.C, P = q.P, Q = q.Q;
    for (int64_t row = r0; row < r1; ++row) {
      const int n = int(row / P), oh = int(row % P);
      const int h0 = oh * q.sh - q.pt;
      for (int ow = 0; ow < Q; ++ow) {
        T* yp = y + (row * Q + ow) * C;
        int32_t* ap = argmax ? argmax + (row * Q + ow) * C : nullptr;
        bool first = true;
        const int ws0 = ow * q.sw - q.pl;
        for (int ih = imax(h0, 0); ih < imin(h0 + q.R, H); ++ih) {
          for (int iw = imax(ws0, 0); iw < imin(ws0 + q.S, W); ++iw) {
            const T* xp = x + ((int64_t(n) * H + ih) * W + iw) * C;
            const int32_t pos = ih * W + iw;
            if (first) {
              for (int c = 0; c < C; ++c) yp[c] = xp[c];
              if (ap) for (int c = 0; c < C; ++c) ap[c] = pos;
              first = false;
            } else if (ap) {
              max_pool_merge(yp, ap, xp, C, pos);
            } else {
              max_pool_merge(yp, xp, C);
            }
          }
        }
      }
    }
  });
}

// dy: [N,P,Q,C]  argmax: [N,P,Q,C]  dx: [N,H,W,C]
template <typename T>
static void max_pool2d_backward(T* dx, const T* dy, const int32_t* argmax, const Pool2dParams& p) {
  const int64_t in_img = int64_t(p.H) * p.W * p.C, out_img = int64_t(p.P) * p.Q * p.C;
  const int C = p.C;
  parallel_for(p.N, grain(in_img + out_img), [&](int64_t n0, int64_t n1, int) {
    for (int64_t n = n0; n < n1; ++n) {
      T* dxn = dx + n * in_img;
      for (int64_t i = 0; i < in_img; ++i) dxn[i] = T(0);
      const T* dyn = dy + n * out_img;
      const int32_t* an = argmax + n * out_img;
      for (int64_t o = 0; o < out_img; o += C)
        for (int c = 0; c < C; ++c) dxn[int64_t(an[o + c]) * C + c] += dyn[o + c];
    }
  });
}

// x: [N,H,W,C]  y: [N,P,Q,C]; divides by the count of real inputs in each window
template <typename T>
static void avg_pool2d_forward(T* y, const T* x, const Pool2dParams& p) {
  const int H = p.H, W = p.W, C = p.C, P = p.P, Q = p.Q;
  const int64_t rows = int64_t(p.N) * P;
  parallel_for(rows, grain(int64_t(Q) * p.R * p.S * C), [&](int64_t r0, int64_t r1, int) {
    for (int64_t row = r0; row < r1; ++row) {
      const int n = int(row / P), oh = int(row % P);
      const int h0 = oh * p.sh - p.pt;
      const int ha = imax(h0, 0), hb = imin(h0 + p.R, H);
      for (int ow = 0; ow < Q; ++ow) {
        T* yp = y + (row * Q + ow) * C;
        const int w0 = ow * p.sw - p.pl;
        const int wa = imax(w0, 0), wb = imin(w0 + p.S, W);
        for (int c = 0; c < C; ++c) yp[c] = T(0);
        for (int ih = ha; ih < hb; ++ih)
          for (int iw = wa; iw < wb; ++iw) {
            const T* xp = x + ((int64_t(n) * H + ih) * W + iw) * C;
            for (int c = 0; c < C; ++c) yp[c] += xp[c];
          }
        const int cnt = (hb - ha) * (wb - wa);
        const T inv = cnt > 0 ? T(1) / T(cnt) : T(0);
        for (int c = 0; c < C; ++c) yp[c] *= inv;
      }
    }
  });
}

// dy: [N,P,Q,C]  dx: [N,H,W,C]
template <typename T>
static void avg_pool2d_backward(T* dx, const T* dy, const Pool2dParams& p) {
  const int H = p.H, W = p.W, C = p.C, P = p.P, Q = p.Q;
  const int64_t in_img = int64_t(H) * W * C, out_img = int64_t(P) * Q * C;
  parallel_for(p.N, grain(in_img + out_img * p.R * p.S), [&](int64_t n0, int64_t n1, int) {
    for (int64_t n = n0; n < n1; ++n) {
      T* dxn = dx + n * in_img;
      for (int64_t i = 0; i < in_img; ++i) dxn[i] = T(0);
      for (int oh = 0; oh < P; ++oh) {
        const int h0 = oh * p.sh - p.pt;
        const int ha = imax(h0, 0), hb = imin(h0 + p.R, H);
        for (int ow = 0; ow < Q; ++ow) {
          const int w0 = ow * p.sw - p.pl;
          const int wa = imax(w0, 0), wb = imin(w0 + p.S, W);
          const int cnt = (hb - ha) * (wb - wa);
          if (cnt <= 0) continue;
          const T inv = T(1) / T(cnt);
          const T* dyp = dy + ((n * P + oh) * Q + ow) * C;
          for (int ih = ha; ih < hb; ++ih)
            for (int iw = wa; iw < wb; ++iw) {
              T* dxp = dxn + (int64_t(ih) * W + iw) * C;
              for (int c = 0; c < C; ++c) dxp[c] += dyp[c] * inv;
            }
        }
      }
    }
  });
}

// x: [N,HW,C]  y: [N,C]
template <typename T>
static void global_avg_pool2d_forward(T* y, const T* x, int N, int HW, int C) {
  parallel_for(N, grain(int64_t(HW) * C), [&](int64_t n0, int64_t n1, int) {
    const T inv = T(1) / T(HW);
    for (int64_t n = n0; n < n1; ++n) {
      T* yp = y + n * C;
      for (int c = 0; c < C; ++c) yp[c] = T(0);
      for (int i = 0; i < HW; ++i) {
        const T* xp = x + (n * HW + i) * C;
        for (int c = 0; c < C; ++c) yp[c] += xp[c];
      }
      for (int c = 0; c < C; ++c) yp[c] *= inv;
    }
  });
}

// dy: [N,C]  dx: [N,HW,C]
template <typename T>
static void global_avg_pool2d_backward(T* dx, const T* dy, int N, int HW, int C) {
  parallel_for(N, grain(int64_t(HW) * C), [&](int64_t n0, int64_t n1, int) {
    const T inv = T(1) / T(HW);
    for (int64_t n = n0; n < n1; ++n)
      for (int i = 0; i < HW; ++i) {
        T* dxp = dx + (n * HW + i) * C;
        const T* dyp = dy + n * C;
        for (int c = 0; c < C; ++c) dxp[c] = dyp[c] * inv;
      }
  });
}

// x: [N,HW,C]  y: [N,C]  argmax: [N,C] position in [0, HW) (NaN propagates: the first NaN wins)
template <typename T>
static void global_max_pool2d_forward(T* y, int32_t* argmax, const T* x, int N, int HW, int C) {
  parallel_for(N, grain(int64_t(HW) * C), [&](int64_t n0, int64_t n1, int) {
    for (int64_t n = n0; n < n1; ++n) {
      T* yp = y + n * C;
      int32_t* ap = argmax + n * C;
      const T* x0 = x + n * HW * C;
      for (int c = 0; c < C; ++c) { yp[c] = x0[c]; ap[c] = 0; }
      for (int i = 1; i < HW; ++i) max_pool_merge(yp, ap, x0 + int64_t(i) * C, C, int32_t(i));
    }
  });
}

// dy: [N,C]  argmax: [N,C]  dx: [N,HW,C] (+)= dy at the arg-max, 0 elsewhere (unless accumulating)
template <typename T>
static void global_max_pool2d_backward(T* dx, const T* dy, const int32_t* argmax, int N, int HW, int C,
                                       bool accumulate) {
  parallel_for(N, grain(int64_t(HW) * C), [&](int64_t n0, int64_t n1, int) {
    for (int64_t n = n0; n < n1; ++n) {
      T* dxn = dx + n * HW * C;
      if (!accumulate)
        for (int64_t i = 0; i < int64_t(HW) * C; ++i) dxn[i] = T(0);
      for (int c = 0; c < C; ++c) dxn[int64_t(argmax[n * C + c]) * C + c] += dy[n * C + c];
    }
  });
}
