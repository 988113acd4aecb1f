// conv2d, portable path. Vectorised along the innermost NHWC / HWIO dimension (K for forward and
// weight gradient, C for data gradient); parallel over output rows (forward), input rows (data
// gradient, gather form: no two threads write the same dx) and fixed blocks of images (weight
// gradient: one partial dw and db per block, added in block order; see reduce_blocks).

// Image blocks of the weight gradient: reduce_blocks(N), and at most 1 Mi floats of partials
// (their traffic, written once and read once, is what the blocks cost: measured 4 % of a VGG
// step at 2 threads with 16 blocks for its 3x3x128x128 layer, none with the 7 this cap gives).
static inline int conv_dw_blocks(const Conv2dParams& p) {
  const int64_t stride = int64_t(p.R) * p.S * p.C * p.K + p.K;
  return reduce_blocks(p.N, (int64_t(1) << 20) / stride);
}

// Scratch for any pass: the transposed weights (data gradient) or conv_dw_blocks - 1 partial
// copies of dw and db (weight gradient). Neither depends on the thread count.
static int64_t conv2d_workspace(const Conv2dParams& p, int /*nthreads*/) {
  const int64_t nw = int64_t(p.R) * p.S * p.C * p.K;
  const int64_t partials = int64_t(conv_dw_blocks(p) - 1) * (nw + p.K);
  return nw > partials ? nw : partials;
}

// The portable kernels are direct convolutions.
static int conv2d_algorithm_direct(const Conv2dParams&, int) { return kConvDirect; }

// x: [N,H,W,C]  w: [R,S,C,K]  b: [K] or null  y: [N,P,Q,K]
template <typename T>
static void conv2d_forward(T* y, const T* x, const T* w, const T* b, T* /*ws*/, const Conv2dParams& p) {
  const int H = p.H, W = p.W, C = p.C, K = p.K, R = p.R, S = p.S, P = p.P, Q = p.Q;
  const int64_t rows = int64_t(p.N) * P;
  parallel_for(rows, grain(int64_t(Q) * R * S * C * K), [&](int64_t r0, int64_t r1, int) {
    for (int64_t row = r0; row < r1; ++row) {
      const int n = int(row / P), oh = int(row % P);
      for (int ow = 0; ow < Q; ++ow) {
        T* yp = y + (row * Q + ow) * K;
        if (b) for (int k = 0; k < K; ++k) yp[k] = b[k];
        else for (int k = 0; k < K; ++k) yp[k] = T(0);
        for (int r = 0; r < R; ++r) {
          const int ih = oh * p.sh - p.pt + r * p.dh;
          if (ih < 0 || ih >= H) continue;
          for (int s = 0; s < S; ++s) {
            const int iw = ow * p.sw - p.pl + s * p.dw;
            if (iw < 0 || iw >= W) continue;
            const T* xp = x + ((int64_t(n) * H + ih) * W + iw) * C;
            const T* wp = w + int64_t(r * S + s) * C * K;
            for (int c = 0; c < C; ++c) {
              const T xv = xp[c];
              const T* wc = wp + int64_t(c) * K;
              for (int k = 0; k < K; ++k) yp[k] += xv * wc[k];
            }
          }
        }
        if (p.relu)
          for (int k = 0; k < K; ++k) yp[k] = yp[k] < T(0) ? T(0) : yp[k];
      }
    }
  });
}

// dy: [N,P,Q,K]  w: [R,S,C,K]  dx: [N,H,W,C]  ws: [R,S,K,C] (w with C and K swapped);
// accumulate: dx += the gradient
template <typename T>
static void conv2d_backward_data(T* dx, const T* dy, const T* w, T* ws, const Conv2dParams& p, bool accumulate) {
  const int H = p.H, W = p.W, C = p.C, K = p.K, R = p.R, S = p.S, P = p.P, Q = p.Q;
  T* wt = ws;
  for (int rs = 0; rs < R * S; ++rs)
    for (int c = 0; c < C; ++c)
      for (int k = 0; k < K; ++k) wt[(int64_t(rs) * K + k) * C + c] = w[(int64_t(rs) * C + c) * K + k];
  const int64_t rows = int64_t(p.N) * H;
  parallel_for(rows, grain(int64_t(W) * R * S * C * K / (int64_t(p.sh) * p.sw)), [&](int64_t r0, int64_t r1, int) {
    for (int64_t row = r0; row < r1; ++row) {
      const int n = int(row / H), ih = int(row % H);
      for (int iw = 0; iw < W; ++iw) {
        T* dxp = dx + (row * W + iw) * C;
        if (!accumulate)
          for (int c = 0; c < C; ++c) dxp[c] = T(0);
        for (int r = 0; r < R; ++r) {
          const int th = ih + p.pt - r * p.dh;
          if (th < 0 || th % p.sh) continue;
          const int oh = th / p.sh;
          if (oh >= P) continue;
          for (int s = 0; s < S; ++s) {
            const int tw = iw + p.pl - s * p.dw;
            if (tw < 0 || tw % p.sw) continue;
            const int ow = tw / p.sw;
            if (ow >= Q) continue;
            const T* dyp = dy + ((int64_t(n) * P + oh) * Q + ow) * K;
            const T* wp = wt + int64_t(r * S + s) * K * C;
            for (int k = 0; k < K; ++k) {
              const T g = dyp[k];
              const T* wk = wp + int64_t(k) * C;
              for (int c = 0; c < C; ++c) dxp[c] += g * wk[c];
            }
          }
        }
      }
    }
  });
}

// dy: [N,P,Q,K]  x: [N,H,W,C]  dw: [R,S,C,K]  db: [K] or null
// ws: conv_dw_blocks - 1 partial copies of dw and db; block 0 accumulates into dw/db directly.
template <typename T>
static void conv2d_backward_weight(T* dw, T* db, const T* dy, const T* x, T* ws,
                                   const Conv2dParams& p) {
  const int H = p.H, W = p.W, C = p.C, K = p.K, R = p.R, S = p.S, P = p.P, Q = p.Q;
  const int64_t nw = int64_t(R) * S * C * K, stride = nw + K;
  const int nb = conv_dw_blocks(p);
  const int64_t per_block = int64_t(P) * Q * R * S * C * K * ((int64_t(p.N) + nb - 1) / nb);
  parallel_blocks(nb, grain(per_block), [&](int b, int) {
    T* aw = b == 0 ? dw : ws + (b - 1) * stride;
    T* ab = b == 0 ? db : ws + (b - 1) * stride + nw;
    for (int64_t i = 0; i < nw; ++i) aw[i] = T(0);
    if (db) for (int k = 0; k < K; ++k) ab[k] = T(0);
    const int n0 = int(block_begin(p.N, nb, b)), n1 = int(block_begin(p.N, nb, b + 1));
    for (int n = n0; n < n1; ++n)
      for (int oh = 0; oh < P; ++oh)
        for (int ow = 0; ow < Q; ++ow) {
          const T* dyp = dy + ((int64_t(n) * P + oh) * Q + ow) * K;
          if (db) for (int k = 0; k < K; ++k) ab[k] += dyp[k];
          for (int r = 0; r < R; ++r) {
            const int ih = oh * p.sh - p.pt + r * p.dh;
            if (ih < 0 || ih >= H) continue;
            for (int s = 0; s < S; ++s) {
              const int iw = ow * p.sw - p.pl + s * p.dw;
              if (iw < 0 || iw >= W) continue;
              const T* xp = x + ((int64_t(n) * H + ih) * W + iw) * C;
              T* ap = aw + int64_t(r * S + s) * C * K;
              for (int c = 0; c < C; ++c) {
                const T xv = xp[c];
                T* ac = ap + int64_t(c) * K;
                for (int k = 0; k < K; ++k) ac[k] += xv * dyp[k];
              }
            }
          }
        }
  });
  add_block_partials(dw, db, ws, nw, K, nb);
}
