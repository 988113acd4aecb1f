// Grouped and depthwise convolution (grouped_conv2d.h), portable path compiled per ISA: the
// innermost loops run over contiguous channels so that each ISA's compiler vectorises them
// (depthwise: y[c] += x[c] * w[c]). Forward parallel over output rows, backward data over images
// (each scatters into its own), backward weight over (tap, channel block) cells, each summed in
// a fixed order: the results do not depend on the thread count.

// The output columns [q0, q1) whose tap s reads a column inside the input (no bounds test per pixel).
static inline void valid_cols(const Conv2dParams& p, int s, int* q0, int* q1) {
  const int off = s * p.dw - p.pl;                  // input column of output column q: q*sw + off
  int a = off >= 0 ? 0 : (-off + p.sw - 1) / p.sw;  // first q with q*sw + off >= 0
  int b = (p.W - 1 - off) < 0 ? 0 : (p.W - 1 - off) / p.sw + 1;  // first q with q*sw + off >= W
  *q0 = a;
  *q1 = b < p.Q ? b : p.Q;
}

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
        for (int r = 0; r < p.R; ++r) {
          const int ih = op * p.sh - p.pt + r * p.dh;
          if (ih < 0 || ih >= p.H) continue;
          T* xrow = dxn + int64_t(ih) * p.W * p.C;
          const T* grow = dy + (n * p.P + op) * int64_t(p.Q) * p.K;
          for (int s = 0; s < p.S; ++s) {
            int q0, q1;
            valid_cols(p, s, &q0, &q1);
            const T* wt = w + (int64_t(r) * p.S + s) * Cg * p.K;
            for (int oq = q0; oq < q1; ++oq) {
              T* xo = xrow + int64_t(oq * p.sw - p.pl + s * p.dw) * p.C;
              const T* g = grow + int64_t(oq) * p.K;
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
      const int k0 = kb * kBlock, k1 = k0 + kBlock < p.K ? k0 + kBlock : p.K, kn = k1 - k0;
      int q0, q1;
      valid_cols(p, s, &q0, &q1);
      T* dwt = dw + int64_t(tap) * Cg * p.K;
      for (int ci = 0; ci < Cg; ++ci)
        for (int k = k0; k < k1; ++k) dwt[int64_t(ci) * p.K + k] = T(0);
      const int64_t xstep = int64_t(p.sw) * p.C;
      for (int n = 0; n < p.N; ++n)
        for (int op = 0; op < p.P; ++op) {
          const int ih = op * p.sh - p.pt + r * p.dh;
          if (ih < 0 || ih >= p.H || q0 >= q1) continue;
          const T* xo = x + ((int64_t(n) * p.H + ih) * p.W + (q0 * p.sw - p.pl + s * p.dw)) * p.C;
          const T* g = dy + ((int64_t(n) * p.P + op) * p.Q + q0) * p.K;
          if (Cg == 1 && Kg == 1) {
            // Depthwise: four output columns at a time into four partial sums, so that the sums
            // of consecutive columns do not wait on one another through memory.
            T a0[kBlock], a1[kBlock], a2[kBlock], a3[kBlock];
            for (int k = 0; k < kn; ++k) a0[k] = a1[k] = a2[k] = a3[k] = T(0);
            int oq = q0;
            for (; oq + 4 <= q1; oq += 4, xo += 4 * xstep, g += 4 * int64_t(p.K)) {
              const T *x1 = xo + xstep, *x2 = xo + 2 * xstep, *x3 = xo + 3 * xstep;
              const T *g1 = g + p.K, *g2 = g + 2 * p.K, *g3 = g + 3 * p.K;
              for (int k = 0; k < kn; ++k) {
                a0[k] += xo[k0 + k] * g[k0 + k];
                a1[k] += x1[k0 + k] * g1[k0 + k];
                a2[k] += x2[k0 + k] * g2[k0 + k];
                a3[k] += x3[k0 + k] * g3[k0 + k];
              }
            }
            for (; oq < q1; ++oq, xo += xstep, g += p.K)
              for (int k = 0; k < kn; ++k) a0[k] += xo[k0 + k] * g[k0 + k];
            for (int k = 0; k < kn; ++k) dwt[k0 + k] += (a0[k] + a1[k]) + (a2[k] + a3[k]);
          } else {
            for (int oq = q0; oq < q1; ++oq, xo += xstep, g += p.K)
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
  });
}
