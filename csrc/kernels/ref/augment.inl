// Image preprocessing kernels (augment.h), portable path (the loops run over channels innermost).

// The pixel an integer coordinate k on an axis of L pixels reads under a non-constant fill mode.
static inline int fill_map(int64_t k, int L, FillMode m) {
  if (k >= 0 && k < L) return int(k);
  if (m == FillMode::nearest) return k < 0 ? 0 : L - 1;
  if (m == FillMode::wrap) {
    const int64_t r = k % L;
    return int(r < 0 ? r + L : r);
  }
  const int64_t P = 2 * int64_t(L);  // reflect: period 2L, mirrored about the edge pixels
  int64_t t = k % P;
  if (t < 0) t += P;
  return int(t < L ? t : P - 1 - t);
}

// Source coordinates are clamped to +-2^40 before they become integers: far outside any image
// (axes are below 2^31), and safe to convert for any zoom.
static inline double clamp_coord(double u) { return u < -1099511627776.0 ? -1099511627776.0 : (u > 1099511627776.0 ? 1099511627776.0 : u); }

// The up to four taps of a source point: pixel offsets (into one image) and weights; a tap in
// the fill region under constant fill has offset -1 (it reads the fill value).
struct WarpTaps {
  int64_t off[4];
  double w[4];
  int n;
};

static inline WarpTaps warp_taps(const double* A, int i, int j, const WarpParams& p) {
  WarpTaps t;
  const double u = clamp_coord(A[0] * j + A[1] * i + A[2]);
  const double v = clamp_coord(A[3] * j + A[4] * i + A[5]);
  int64_t xs[2], ys[2];
  double wx[2], wy[2];
  int nx, ny;
  if (!p.bilinear) {
    xs[0] = int64_t(std::floor(u + 0.5));
    ys[0] = int64_t(std::floor(v + 0.5));
    wx[0] = wy[0] = 1.0;
    nx = ny = 1;
  } else {
    const double fu = std::floor(u), fv = std::floor(v);
    const double du = u - fu, dv = v - fv;
    xs[0] = int64_t(fu), xs[1] = int64_t(fu) + 1;
    ys[0] = int64_t(fv), ys[1] = int64_t(fv) + 1;
    wx[0] = 1.0 - du, wx[1] = du;
    wy[0] = 1.0 - dv, wy[1] = dv;
    nx = du == 0.0 ? 1 : 2;  // an exact coordinate reads one pixel (flips, whole-pixel shifts)
    ny = dv == 0.0 ? 1 : 2;
  }
  t.n = 0;
  for (int a = 0; a < ny; ++a)
    for (int b = 0; b < nx; ++b) {
      int64_t yy = ys[a], xx = xs[b];
      const bool inside = yy >= 0 && yy < p.H && xx >= 0 && xx < p.W;
      if (!inside && p.fill != FillMode::constant) {
        yy = fill_map(yy, p.H, p.fill);
        xx = fill_map(xx, p.W, p.fill);
      }
      t.off[t.n] = (inside || p.fill != FillMode::constant) ? (int64_t(yy) * p.W + xx) * p.C : -1;
      t.w[t.n] = wy[a] * wx[b];
      ++t.n;
    }
  return t;
}

// A map that moves whole pixels along the axes (a flip, a crop, a whole-pixel shift): u = a j + c,
// v = b i + d with a, b = +-1 and integer c, d. Such rows are copied, not interpolated.
static inline bool whole_pixel_map(const double* A) {
  auto unit = [](double v) { return v == 1.0 || v == -1.0; };
  auto whole = [](double v) { return v == std::floor(v) && std::fabs(v) < 1e15; };
  return A[1] == 0.0 && A[3] == 0.0 && unit(A[0]) && unit(A[4]) && whole(A[2]) && whole(A[5]);
}

// Row i of a whole-pixel map: the same values warp_taps reads, by integer arithmetic.
template <typename T>
static void warp_row_whole(T* yr, const T* xi, const double* A, int i, const WarpParams& p) {
  const int C = p.C;
  const int64_t a = int64_t(A[0]), c = int64_t(A[2]), Wo = p.Wo, W = p.W;
  int64_t v = int64_t(A[4]) * i + int64_t(A[5]);
  const bool fill_row = v < 0 || v >= p.H;
  if (fill_row && p.fill == FillMode::constant) {
    for (int64_t e = 0; e < Wo * C; ++e) yr[e] = T(p.fill_value);
    return;
  }
  if (fill_row) v = fill_map(v, p.H, p.fill);
  const T* xr = xi + v * W * C;
  // columns whose source is inside the image: [j0, j1)
  int64_t j0, j1;
  if (a == 1) {
    j0 = std::max<int64_t>(0, -c), j1 = std::min(Wo, W - c);
  } else {
    j0 = std::max<int64_t>(0, c - W + 1), j1 = std::min(Wo, c + 1);
  }
  j0 = std::min(j0, Wo);
  if (j1 < j0) j1 = j0;
  if (a == 1 && j1 > j0) {
    std::memcpy(yr + j0 * C, xr + (j0 + c) * C, sizeof(T) * size_t(j1 - j0) * size_t(C));
  } else {
    for (int64_t j = j0; j < j1; ++j) {
      const T* s = xr + (c - j) * C;
      T* d = yr + j * C;
      for (int k = 0; k < C; ++k) d[k] = s[k];
    }
  }
  for (int64_t j = 0; j < Wo; ++j) {
    if (j == j0) j = j1;
    if (j >= Wo) break;
    T* d = yr + int64_t(j) * C;
    if (p.fill == FillMode::constant) {
      for (int k = 0; k < C; ++k) d[k] = T(p.fill_value);
    } else {
      const T* s = xr + int64_t(fill_map(a * j + c, p.W, p.fill)) * C;  // |a j + c| < 2^52
      for (int k = 0; k < C; ++k) d[k] = s[k];
    }
  }
}

// x: [N,H,W,C], y: [N,Ho,Wo,C], mats: [N,6]
template <typename T>
static void warp_forward(T* y, const T* x, const double* mats, const WarpParams& p) {
  const int C = p.C;
  const int64_t in_img = int64_t(p.H) * p.W * C, out_img = int64_t(p.Ho) * p.Wo * C;
  parallel_for(int64_t(p.N) * p.Ho, grain(int64_t(p.Wo) * C * 8), [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const int n = int(r / p.Ho), i = int(r % p.Ho);
      const double* A = mats + 6 * int64_t(n);
      const T* xi = x + n * in_img;
      T* yr = y + n * out_img + int64_t(i) * p.Wo * C;
      if (whole_pixel_map(A)) {
        warp_row_whole(yr, xi, A, i, p);
        continue;
      }
      for (int j = 0; j < p.Wo; ++j) {
        const WarpTaps t = warp_taps(A, i, j, p);
        T* yp = yr + int64_t(j) * C;
        if (t.n == 1 && t.off[0] >= 0) {
          const T* s = xi + t.off[0];
          for (int c = 0; c < C; ++c) yp[c] = s[c];
          continue;
        }
        for (int c = 0; c < C; ++c) yp[c] = T(0);
        for (int q = 0; q < t.n; ++q) {
          const T w = T(t.w[q]);
          if (t.off[q] < 0) {
            const T f = T(p.fill_value) * w;
            for (int c = 0; c < C; ++c) yp[c] += f;
          } else {
            const T* s = xi + t.off[q];
            for (int c = 0; c < C; ++c) yp[c] += w * s[c];
          }
        }
      }
    }
  });
}

template <typename T>
static void warp_backward(T* dx, const T* dy, const double* mats, const WarpParams& p, bool accumulate) {
  const int C = p.C;
  const int64_t in_img = int64_t(p.H) * p.W * C, out_img = int64_t(p.Ho) * p.Wo * C;
  parallel_for(p.N, 1, [&](int64_t n0, int64_t n1, int) {  // whole samples: each writes its own dx
    for (int64_t n = n0; n < n1; ++n) {
      T* dxi = dx + n * in_img;
      if (!accumulate)
        for (int64_t e = 0; e < in_img; ++e) dxi[e] = T(0);
      const double* A = mats + 6 * n;
      for (int i = 0; i < p.Ho; ++i)
        for (int j = 0; j < p.Wo; ++j) {
          const WarpTaps t = warp_taps(A, i, j, p);
          const T* g = dy + n * out_img + (int64_t(i) * p.Wo + j) * C;
          for (int q = 0; q < t.n; ++q) {
            if (t.off[q] < 0) continue;
            const T w = T(t.w[q]);
            T* d = dxi + t.off[q];
            for (int c = 0; c < C; ++c) d[c] += w * g[c];
          }
        }
    }
  });
}

// x, y: [N, M, C]; factor: [N]. One sample's channel at a time (a sample's pixels stay in cache).
template <typename T>
static void contrast_forward(T* y, const T* x, const T* factor, int N, int64_t M, int C, double lo, double hi) {
  parallel_for(int64_t(N) * C, 1, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / C, c = r % C;
      const T* xs = x + n * M * C + c;
      T* ys = y + n * M * C + c;
      double mean = 0.0;
      for (int64_t m = 0; m < M; ++m) mean += double(xs[m * C]);
      mean /= double(M);
      const double f = double(factor[n]);
      for (int64_t m = 0; m < M; ++m) {
        const double v = (double(xs[m * C]) - mean) * f + mean;
        ys[m * C] = T(v < lo ? lo : (v > hi ? hi : v));
      }
    }
  });
}

template <typename T>
static void contrast_backward(T* dx, const T* dy, const T* y, const T* factor, int N, int64_t M, int C, double lo,
                              double hi, bool accumulate) {
  parallel_for(int64_t(N) * C, 1, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / C, o = n * M * C + r % C;
      double sum = 0.0;
      for (int64_t m = 0; m < M; ++m) {
        const T v = y[o + m * C];
        if (v > T(lo) && v < T(hi)) sum += double(dy[o + m * C]);
      }
      const double f = double(factor[n]);
      sum *= (1.0 - f) / double(M);
      for (int64_t m = 0; m < M; ++m) {
        const int64_t e = o + m * C;
        const T v = y[e];
        const double g = (v > T(lo) && v < T(hi) ? f * double(dy[e]) : 0.0) + sum;
        dx[e] = accumulate ? T(dx[e] + g) : T(g);
      }
    }
  });
}

// x, y: [N, S]; delta: [N]
template <typename T>
static void shift_clip_forward(T* y, const T* x, const T* delta, int N, int64_t S, double lo, double hi) {
  parallel_for(int64_t(N) * S, 4096, [&](int64_t e0, int64_t e1, int) {
    const T l = T(lo), h = T(hi);
    for (int64_t e = e0; e < e1; ++e) {
      const T v = x[e] + delta[e / S];
      y[e] = v < l ? l : (v > h ? h : v);
    }
  });
}

template <typename T>
static void shift_clip_backward(T* dx, const T* dy, const T* y, int64_t n, double lo, double hi, bool accumulate) {
  parallel_for(n, 4096, [&](int64_t e0, int64_t e1, int) {
    const T l = T(lo), h = T(hi);
    for (int64_t e = e0; e < e1; ++e) {
      const T g = y[e] > l && y[e] < h ? dy[e] : T(0);
      dx[e] = accumulate ? dx[e] + g : g;
    }
  });
}

// x, y: [N,H,W,C]; boxes: [N,4] = top, left, h, w
template <typename T>
static void erase_boxes(T* y, const T* x, const int32_t* boxes, int N, int H, int W, int C, double value,
                        bool accumulate) {
  const int64_t row = int64_t(W) * C, img = int64_t(H) * row;
  parallel_for(int64_t(N) * H, grain(row * 4), [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / H;
      const int i = int(r % H);
      const int32_t* b = boxes + 4 * n;
      const T* xr = x + n * img + i * row;
      T* yr = y + n * img + i * row;
      const bool hit = b[2] > 0 && i >= b[0] && i < b[0] + b[2];
      const int64_t e0 = hit ? int64_t(b[1]) * C : row, e1 = hit ? int64_t(b[1] + b[3]) * C : row;
      for (int64_t e = 0; e < row; ++e) {
        const T v = (e >= e0 && e < e1) ? T(value) : xr[e];
        yr[e] = accumulate ? yr[e] + v : v;
      }
    }
  });
}
