// Grouped and depthwise convolution (grouped_conv2d.h), portable path compiled per ISA: the
// innermost loops run over contiguous channels so that each ISA's compiler vectorises them
// (depthwise: y[c] += x[c] * w[c]). Forward parallel over output rows, backward data over images
// (each scatters into its own), backward weight over (tap, channel block) cells, each summed in
// a fixed order: the results do not depend on the thread count.

// One output pixel's taps: y[0..K) += sum over groups of x pixel (C values) times the tap's
// [Cg, K] weights.
template <typename T>
static inline void gconv_tap(T* y, const T* x, const T* w, int C, int K, int G) {
  const int Cg = C / G, Kg = K / G;
  if (Cg == 1 && Kg == 1) {
    for (int c = 0; c < C; ++c) y[c] += x[c] * w[c];
  } else if (Cg == 1) {
    for (int c = 0; c < C; ++c) {
      const T xv = x[c];
      T* yo = y + int64_t(c) * Kg;
      const T* wo = w + int64_t(c) * Kg;
      for (int j = 0; j < Kg; ++j) yo[j] += xv * wo[j];
    }
  } else {
    for (int g = 0; g < G; ++g)
      for (int ci = 0; ci < Cg; ++ci) {
        const T xv = x[g * Cg + ci];
        const T* wo = w + int64_t(ci) * K + int64_t(g) * Kg;
        T* yo = y + int64_t(g) * Kg;
        for (int j = 0; j < Kg; ++j) yo[j] += xv * wo[j];
      }
  }
}

// x: [N,H,W,C], w: [R,S,C/G,K], b: [K] or null, y: [N,P,Q,K]
template <typename T>
static void grouped_conv2d_forward(T* y, const T* x, const T* w, const T* b, const Conv2dParams& p, int G) {
  const int Cg = p.C / G;
  parallel_for(int64_t(p.N) * p.P, grain(int64_t(p.Q) * p.K * p.R * p.S * Cg), [&](int64_t r0, int64_t r1, int) {
    for (int64_t row = r0; row < r1; ++row) {
      const int n = int(row / p.P), op = int(row % p.P);
      for (int oq = 0; oq < p.Q; ++oq) {
        T* yo = y + (row * p.Q + oq) * p.K;
        for (int k = 0; k < p.K; ++k) yo[k] = b ? b[k] : T(0);
        for (int r = 0; r < p.R; ++r) {
          const int ih = op * p.sh - p.pt + r * p.dh;
          if (ih < 0 || ih >= p.H) continue;
          for (int s = 0; s < p.S; ++s) {
            const int iw = oq * p.sw - p.pl + s * p.dw;
            if (iw < 0 || iw >= p.W) continue;
            gconv_tap(yo, x + ((int64_t(n) * p.H + ih) * p.W + iw) * p.C, w + (int64_t(r) * p.S + s) * Cg * p.K, p.C,
                      p.K, G);
          }
        }
      }
    }
  });
}

// dy: [N,P,Q,K] -> dx: [N,H,W,C]
template <typename T>
static void grouped_conv2d_backward_data(T* dx, const T* dy, const T* w, const Conv2dParams& p, int G,
                                         bool accumulate) {
  const int Cg = p.C / G, Kg = p.K / G;
  const int64_t img = int64_t(p.H) * p.W * p.C;
  parallel_for(p.N, grain(int64_t(p.P) * p.Q * p.K * p.R * p.S * Cg), [&](int64_t n0, int64_t n1, int) {
    for (int64_t n = n0; n < n1; ++n) {
      T* dxn = dx + n * img;
      if (!accumulate)
        for (int64_t i = 0; i < img; ++i) dxn[i] = T(0);
      for (int op = 0; op < p.P; ++op)
        for (int oq = 0; oq < p.Q; ++oq) {
          const T* g = dy + ((n * p.P + op) * p.Q + oq) * p.K;
          for (int r = 0; r < p.R; ++r) {
            const int ih = op * p.sh - p.pt + r * p.dh;
            if (ih < 0 || ih >= p.H) continue;
            for (int s = 0; s < p.S; ++s) {
              const int iw = oq * p.sw - p.pl + s * p.dw;
              if (iw < 0 || iw >= p.W) continue;
              T* xo = dxn + (int64_t(ih) * p.W + iw) * p.C;
              const T* wt = w + (int64_t(r) * p.S + s) * Cg * p.K;
              if (Cg == 1 && Kg == 1) {
                for (int c = 0; c < p.C; ++c) xo[c] += g[c] * wt[c];
              } else {
                for (int gr = 0; gr < G; ++gr)
                  for (int ci = 0; ci < Cg; ++ci) {
                    const T* wo = wt + int64_t(ci) * p.K + int64_t(gr) * Kg;
                    const T* go = g + int64_t(gr) * Kg;
                    T acc = T(0);
                    for (int j = 0; j < Kg; ++j) acc += go[j] * wo[j];
                    xo[gr * Cg + ci] += acc;
                  }
              }
            }
          }
        }
    }
  });
}

// x: [N,H,W,C], dy: [N,P,Q,K] -> dw: [R,S,C/G,K]
template <typename T>
static void grouped_conv2d_backward_weight(T* dw, const T* x, const T* dy, const Conv2dParams& p, int G) {
  const int Cg = p.C / G, Kg = p.K / G;
  constexpr int kBlock = 64;
  const int nb = (p.K + kBlock - 1) / kBlock;
  const int64_t cells = int64_t(p.R) * p.S * nb;
  parallel_for(cells, 1, [&](int64_t c0, int64_t c1, int) {
    for (int64_t cell = c0; cell < c1; ++cell) {
      const int tap = int(cell / nb), kb = int(cell % nb);
      const int r = tap / p.S, s = tap % p.S;
      const int k0 = kb * kBlock, k1 = k0 + kBlock < p.K ? k0 + kBlock : p.K;
      T* dwt = dw + int64_t(tap) * Cg * p.K;
      for (int ci = 0; ci < Cg; ++ci)
        for (int k = k0; k < k1; ++k) dwt[int64_t(ci) * p.K + k] = T(0);
      for (int n = 0; n < p.N; ++n)
        for (int op = 0; op < p.P; ++op) {
          const int ih = op * p.sh - p.pt + r * p.dh;
          if (ih < 0 || ih >= p.H) continue;
          for (int oq = 0; oq < p.Q; ++oq) {
            const int iw = oq * p.sw - p.pl + s * p.dw;
            if (iw < 0 || iw >= p.W) continue;
            const T* xo = x + ((int64_t(n) * p.H + ih) * p.W + iw) * p.C;
            const T* g = dy + ((int64_t(n) * p.P + op) * p.Q + oq) * p.K;
            if (Cg == 1 && Kg == 1) {
              for (int k = k0; k < k1; ++k) dwt[k] += xo[k] * g[k];
            } else {
              // each group's outputs inside the block: a contiguous run of dwt's row ci per input
              for (int gr = k0 / Kg; gr * Kg < k1; ++gr) {
                const int a = gr * Kg > k0 ? gr * Kg : k0, b = (gr + 1) * Kg < k1 ? (gr + 1) * Kg : k1;
                for (int ci = 0; ci < Cg; ++ci) {
                  const T xv = xo[gr * Cg + ci];
                  T* d = dwt + int64_t(ci) * p.K;
                  for (int k = a; k < b; ++k) d[k] += xv * g[k];
                }
              }
            }
          }
        }
    }
  });
}
