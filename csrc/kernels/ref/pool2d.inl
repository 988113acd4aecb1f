// pool2d, portable path. Parallel over output rows (forward) and images (backward: each image's
// dx is written by one thread, so overlapping windows need no atomics).

// Whether v replaces the window's best so far: larger, or the window's first NaN (no NaN replaces
// a NaN, so the first one wins). Strict comparison: among equal values the first position wins.
template <typename T>
static inline bool max_pool_takes(T v, T best) {
  return (v > best) | ((v != v) & (best == best));
}

// Channel loop of one window position (global max pooling: one window per image). Unconditional
// selects over restrict pointers, so it vectorises (with a possibly aliasing int32 store in the
// loop, GCC reloaded the loop bound and ran it scalar).
template <typename T>
static inline void max_pool_merge(T* __restrict y, int32_t* __restrict am, const T* __restrict x, int C, int32_t pos) {
  for (int c = 0; c < C; ++c) {
    const T v = x[c], best = y[c];
    const bool take = max_pool_takes(v, best);
    y[c] = take ? v : best;
    am[c] = take ? pos : am[c];
  }
}

// One vector of the ISA this object is compiled for: wider vectors, split by the compiler, made the
// AVX2 and SSE2 paths 10-30x slower than their own loops.
#if defined(__AVX512F__)
constexpr int kPoolVecBytes = 64;
#elif defined(__AVX__)
constexpr int kPoolVecBytes = 32;
#else
constexpr int kPoolVecBytes = 16;
#endif
template <typename T>
struct PoolBlock {
  static constexpr int B = kPoolVecBytes / int(sizeof(T));
  typedef T V __attribute__((vector_size(kPoolVecBytes)));
  typedef int32_t I __attribute__((vector_size(B * 4)));
};

// One output position, channels [c0, c0 + B) with B = one vector of T: the running maxima and their
// positions stay in vector registers (GCC vector extensions: the same source for every ISA) and y
// is stored once. Merging each window position into y in memory ran at a sixth of the speed when
// C was not a multiple of the vector width (partial vector stores stalling the next position's
// loads); plain loops over a local array compiled to compare-and-branch per channel. Window rows
// [ha, hb), columns [wa, wb); FR, FS > 0: a full window of that size known at compile time (2x2),
// so the loops unroll. n < B (the last block of channels): the loads still read B values, the rest
// from the next pixel (the caller makes sure they lie inside x), and only n are stored.
template <bool ARG, int FR, int FS, typename T>
static inline void max_pool_window(T* __restrict yp, int32_t* __restrict ap, const T* __restrict xn, int W, int C,
                                   int n, int ha, int hb, int wa, int wb) {
  typedef typename PoolBlock<T>::V V;
  typedef typename PoolBlock<T>::I I;
  if (FR > 0) hb = ha + FR;
  if (FS > 0) wb = wa + FS;
  V best;
  __builtin_memcpy(&best, xn + (int64_t(ha) * W + wa) * C, sizeof(V));
  I pos = I{} + (ha * W + wa);
  for (int ih = ha; ih < hb; ++ih)
    for (int iw = (ih == ha ? wa + 1 : wa); iw < wb; ++iw) {
      V v;
      __builtin_memcpy(&v, xn + (int64_t(ih) * W + iw) * C, sizeof(V));
      const auto take = (v > best) | ((v != v) & (best == best));
      best = take ? v : best;
      if (ARG) pos = __builtin_convertvector(take, I) ? I{} + (ih * W + iw) : pos;
    }
  if (n == PoolBlock<T>::B) {
    __builtin_memcpy(yp, &best, sizeof(V));
    if (ARG) __builtin_memcpy(ap, &pos, sizeof(I));
  } else {
    for (int j = 0; j < n; ++j) yp[j] = best[j];
    if (ARG)
      for (int j = 0; j < n; ++j) ap[j] = pos[j];
  }
}

// The channels past the last full block, one at a time (the last pixels of x, where a full
// block's loads would read past its end).
template <bool ARG, typename T>
static inline void max_pool_window_tail(T* __restrict yp, int32_t* __restrict ap, const T* __restrict xn, int W, int C,
                                        int c0, int ha, int hb, int wa, int wb) {
  for (int c = c0; c < C; ++c) {
    T best = xn[(int64_t(ha) * W + wa) * C + c];
    int32_t pos = ha * W + wa;
    for (int ih = ha; ih < hb; ++ih)
      for (int iw = (ih == ha ? wa + 1 : wa); iw < wb; ++iw) {
        const T v = xn[(int64_t(ih) * W + iw) * C + c];
        const bool take = max_pool_takes(v, best);
        best = take ? v : best;
        pos = take ? ih * W + iw : pos;
      }
    yp[c] = best;
    if (ARG) ap[c] = pos;
  }
}

template <bool ARG, typename T>
static void max_pool2d_rows(T* y, int32_t* argmax, const T* x, const Pool2dParams& q, int64_t r0, int64_t r1) {
  constexpr int B = PoolBlock<T>::B;
  const int H = q.H, W = q.W, C = q.C, P = q.P, Q = q.Q;
  const T* x_end = x + int64_t(q.N) * H * W * C;
  for (int64_t row = r0; row < r1; ++row) {
    const int n = int(row / P), oh = int(row % P);
    const int h0 = oh * q.sh - q.pt;
    const int ha = imax(h0, 0), hb = imin(h0 + q.R, H);
    const T* xn = x + int64_t(n) * H * W * C;
    for (int ow = 0; ow < Q; ++ow) {
      T* yp = y + (row * Q + ow) * C;
      int32_t* ap = ARG ? argmax + (row * Q + ow) * C : nullptr;
      const int w0 = ow * q.sw - q.pl;
      const int wa = imax(w0, 0), wb = imin(w0 + q.S, W);
      const T* last = xn + (int64_t(hb - 1) * W + wb - 1) * C;  // the window's last pixel
      for (int c0 = 0; c0 < C; c0 += B) {
        const int nc = imin(B, C - c0);
        if (nc < B && last + c0 + B > x_end) {
          max_pool_window_tail<ARG>(yp, ap, xn, W, C, c0, ha, hb, wa, wb);
          break;
        }
        if (hb - ha == 2 && wb - wa == 2)
          max_pool_window<ARG, 2, 2>(yp + c0, ARG ? ap + c0 : nullptr, xn + c0, W, C, nc, ha, hb, wa, wb);
        else
          max_pool_window<ARG, 0, 0>(yp + c0, ARG ? ap + c0 : nullptr, xn + c0, W, C, nc, ha, hb, wa, wb);
      }
    }
  }
}

// x: [N,H,W,C]  y: [N,P,Q,C]  argmax: [N,P,Q,C] input position ih*W+iw, or null. Every window
// holds at least one real input (make_pool2d_params: padding smaller than the window).
template <typename T>
static void max_pool2d_forward(T* y, int32_t* argmax, const T* x, const Pool2dParams& p) {
  const Pool2dParams q = p;
  parallel_for(int64_t(q.N) * q.P, grain(int64_t(q.Q) * q.R * q.S * q.C), [y, argmax, x, q](int64_t r0, int64_t r1, int) {
    if (argmax)
      max_pool2d_rows<true>(y, argmax, x, q, r0, r1);
    else
      max_pool2d_rows<false>(y, argmax, x, q, r0, r1);
  });
}

// v where k holds, else +0, by masking its bits (a select may compile to a branch per element,
// which mispredicts on the argmax pattern).
static inline float keep_if(bool k, float v) {
  uint32_t u;
  __builtin_memcpy(&u, &v, sizeof(u));
  u &= 0u - uint32_t(k);
  __builtin_memcpy(&v, &u, sizeof(u));
  return v;
}
static inline double keep_if(bool k, double v) {
  uint64_t u;
  __builtin_memcpy(&u, &v, sizeof(u));
  u &= uint64_t(0) - uint64_t(k);
  __builtin_memcpy(&v, &u, sizeof(u));
  return v;
}

// Windows that tile the input without overlapping (strides = window, the usual 2x2/2), channels a
// multiple of the vector width: each dx element lies in at most one window, so it is written once,
// dy where the window took it and 0 elsewhere, instead of zeroing the image and scattering into it
// (two passes over dx). RELU: times relu'(y), as max_pool2d_backward's relu_y.
template <bool RELU, typename T>
static void max_pool2d_backward_tiled(T* dxn, const T* __restrict dyn, const int32_t* __restrict an,
                                      const T* __restrict yn, const Pool2dParams& p) {
  const int H = p.H, W = p.W, C = p.C;
  const int hc = imin(p.P * p.sh - p.pt, H), wc = imin(p.Q * p.sw - p.pl, W);  // rows, columns covered
  for (int oh = 0; oh < p.P; ++oh) {
    const int ha = imax(oh * p.sh - p.pt, 0), hb = imin(oh * p.sh - p.pt + p.R, H);
    for (int ih = ha; ih < hb; ++ih) {
      T* __restrict row = dxn + int64_t(ih) * W * C;
      for (int ow = 0; ow < p.Q; ++ow) {
        const int wa = imax(ow * p.sw - p.pl, 0), wb = imin(ow * p.sw - p.pl + p.S, W);
        const int64_t o0 = (int64_t(oh) * p.Q + ow) * C;
        const T* __restrict d = dyn + o0;
        const int32_t* __restrict a = an + o0;
        for (int iw = wa; iw < wb; ++iw) {
          T* __restrict o = row + int64_t(iw) * C;
          const int32_t pos = ih * W + iw;
          if (RELU) {
            const T* __restrict y = yn + o0;
            for (int c = 0; c < C; ++c) o[c] = keep_if(a[c] == pos, (T(0) + d[c]) * (y[c] > T(0) ? T(1) : T(0)));
          } else {
            for (int c = 0; c < C; ++c) o[c] = keep_if(a[c] == pos, T(0) + d[c]);  // 0 + dy: as the scatter
          }
        }
      }
      for (int64_t i = int64_t(wc) * C; i < int64_t(W) * C; ++i) row[i] = T(0);
    }
  }
  for (int64_t i = int64_t(hc) * W * C; i < int64_t(H) * W * C; ++i) dxn[i] = T(0);
}

// dy: [N,P,Q,C]  argmax: [N,P,Q,C]  dx: [N,H,W,C]
// relu_y (or null): the pooling's output y when its input is a ReLU's output; dx is then the
// gradient before that ReLU, relu_backward(max_pool2d_backward(dy), x) to the bit: a window's
// element was positive exactly when its maximum y is, and only those elements get a gradient.
template <typename T>
static void max_pool2d_backward(T* dx, const T* dy, const int32_t* argmax, const Pool2dParams& p, const T* relu_y) {
  const int64_t in_img = int64_t(p.H) * p.W * p.C, out_img = int64_t(p.P) * p.Q * p.C;
  const int C = p.C;
  // (the channel loop's vector tail, C not a multiple of the vector width, made the tiled form 5x
  // slower than zeroing and scattering at LeNet's 6 channels)
  const bool tiled = p.sh == p.R && p.sw == p.S && p.C % PoolBlock<T>::B == 0;
  parallel_for(p.N, grain(in_img + out_img), [&](int64_t n0, int64_t n1, int) {
    for (int64_t n = n0; n < n1; ++n) {
      T* dxn = dx + n * in_img;
      const T* dyn = dy + n * out_img;
      const int32_t* an = argmax + n * out_img;
      const T* yn = relu_y ? relu_y + n * out_img : nullptr;
      if (tiled) {
        if (yn) max_pool2d_backward_tiled<true>(dxn, dyn, an, yn, p);
        else max_pool2d_backward_tiled<false>(dxn, dyn, an, yn, p);
        continue;
      }
      for (int64_t i = 0; i < in_img; ++i) dxn[i] = T(0);
      for (int64_t o = 0; o < out_img; o += C)
        for (int c = 0; c < C; ++c) dxn[int64_t(an[o + c]) * C + c] += dyn[o + c];
      if (yn)  // after the sums, as the ReLU's backward would; a 0/1 factor applied twice is applied once
        for (int64_t o = 0; o < out_img; o += C)
          for (int c = 0; c < C; ++c) dxn[int64_t(an[o + c]) * C + c] *= yn[o + c] > T(0) ? T(1) : T(0);
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
