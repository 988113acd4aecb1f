// Winograd convolution F(MxM, 3x3), M = 2 or 4, for stride-1, dilation-1 3x3 layers on NHWC
// (float; AVX2 / AVX-512 / NEON tables, after conv2d.inl, whose register tiles it reuses).
//
// With alpha = M + 2, B, G, A the transform matrices of Lavin & Gray (interpolation points 0, +-1
// for M = 2; 0, +-1, +-2 and infinity for M = 4):
//   forward          y tile (MxM)  = A^T [ (G g G^T) . (B^T d B) ] A       d: an alpha x alpha input tile
//   weight gradient  dw (3x3)      = G^T [ sum over tiles (A e A^T) . (B^T d B) ] G   e: an MxM dy tile
// (the weight gradient is the same trilinear form differentiated for g instead of the output).
// The data gradient is the forward algorithm on dy with the weights rotated and C, K swapped, as
// the direct kernels do for stride 1 (bwd_data_as_forward). Every elementwise product over the
// alpha^2 positions xi becomes a GEMM over channels: forward  M[xi] (tiles x K) = V[xi] (tiles x C)
// x U[xi] (C x K); weight gradient  W^[xi] (C x K) = sum over tiles X[xi]^T D[xi]. Those GEMMs run
// the direct kernels' register tiles (conv_fwd_row with a 1x1 "kernel", conv_bwd_w_tile).
//
// Tiles are numbered over the whole batch (image-major, then tile rows, then tile columns), so a
// chunk of T tiles may span images and small images still fill the GEMM's rows. Transforms are
// vectorised over channels (contiguous in NHWC and in HWIO weights).
//
// Arithmetic: 16 products per 4 outputs (F(2x2), 2.25x fewer than direct) or 36 per 16 (F(4x4),
// 4x fewer); F(4x4)'s transforms scale values by up to 8 and 1/24, so its rounding error is 10-20
// times F(2x2)'s and 5-10 times direct's (bench/winograd_accuracy.py; tests/test_winograd.py
// bounds both against float64).

template <int M> struct Wino;

// The 1-D transforms: in[] read with stride si, out[] written with stride so.
template <> struct Wino<2> {
  static constexpr int A = 4;
  template <class V> static inline void bt(const V* d, int si, V* o, int so) {  // B^T: 4 -> 4
    const V d0 = d[0], d1 = d[si], d2 = d[2 * si], d3 = d[3 * si];
    o[0] = d0 - d2; o[so] = d1 + d2; o[2 * so] = d2 - d1; o[3 * so] = d1 - d3;
  }
  template <class V> static inline void g(const V* w, int si, V* o, int so) {  // G: 3 -> 4
    const V g0 = w[0], g1 = w[si], g2 = w[2 * si], h = V(g0 + g2) * 0.5f, k = g1 * 0.5f;
    o[0] = g0; o[so] = h + k; o[2 * so] = h - k; o[3 * so] = g2;
  }
  template <class V> static inline void at(const V* m, int si, V* o, int so) {  // A^T: 4 -> 2
    const V m0 = m[0], m1 = m[si], m2 = m[2 * si], m3 = m[3 * si];
    o[0] = m0 + m1 + m2; o[so] = m1 - m2 - m3;
  }
  template <class V> static inline void a(const V* e, int si, V* o, int so) {  // A: 2 -> 4
    const V e0 = e[0], e1 = e[si];
    o[0] = e0; o[so] = e0 + e1; o[2 * so] = e0 - e1; o[3 * so] = -e1;
  }
  template <class V> static inline void gt(const V* m, int si, V* o, int so) {  // G^T: 4 -> 3
    const V m0 = m[0], m1 = m[si], m2 = m[2 * si], m3 = m[3 * si], h = V(m1 + m2) * 0.5f;
    o[0] = m0 + h; o[so] = V(m1 - m2) * 0.5f; o[2 * so] = h + m3;
  }
};

template <> struct Wino<4> {
  static constexpr int A = 6;
  template <class V> static inline void bt(const V* d, int si, V* o, int so) {  // B^T: 6 -> 6
    const V d0 = d[0], d1 = d[si], d2 = d[2 * si], d3 = d[3 * si], d4 = d[4 * si], d5 = d[5 * si];
    const V s12 = d1 + d2, t12 = d1 - d2, s34 = d3 + d4, t43 = d4 - d3, u = d4 - d2, v = d3 - d1;
    o[0] = d0 * 4.0f - d2 * 5.0f + d4;
    o[so] = s34 - s12 * 4.0f;
    o[2 * so] = t43 + t12 * 4.0f;
    o[3 * so] = u + v * 2.0f;
    o[4 * so] = u - v * 2.0f;
    o[5 * so] = d1 * 4.0f - d3 * 5.0f + d5;
  }
  template <class V> static inline void g(const V* w, int si, V* o, int so) {  // G: 3 -> 6
    const V g0 = w[0], g1 = w[si], g2 = w[2 * si];
    const V s = g0 + g2, p = s * (1.0f / 6.0f), q = g1 * (1.0f / 6.0f);
    const V r = g0 * (1.0f / 24.0f) + g2 * (1.0f / 6.0f), t = g1 * (1.0f / 12.0f);
    o[0] = g0 * 0.25f;
    o[so] = -(p + q);
    o[2 * so] = q - p;
    o[3 * so] = r + t;
    o[4 * so] = r - t;
    o[5 * so] = g2;
  }
  template <class V> static inline void at(const V* m, int si, V* o, int so) {  // A^T: 6 -> 4
    const V m0 = m[0], m1 = m[si], m2 = m[2 * si], m3 = m[3 * si], m4 = m[4 * si], m5 = m[5 * si];
    const V t1 = m1 + m2, t2 = m1 - m2, t3 = m3 + m4, t4 = m3 - m4;
    o[0] = m0 + t1 + t3;
    o[so] = t2 + t4 * 2.0f;
    o[2 * so] = t1 + t3 * 4.0f;
    o[3 * so] = t2 + t4 * 8.0f + m5;
  }
  template <class V> static inline void a(const V* e, int si, V* o, int so) {  // A: 4 -> 6
    const V e0 = e[0], e1 = e[si], e2 = e[2 * si], e3 = e[3 * si];
    const V s02 = e0 + e2, s13 = e1 + e3, f02 = e0 + e2 * 4.0f, f13 = e1 * 2.0f + e3 * 8.0f;
    o[0] = e0;
    o[so] = s02 + s13;
    o[2 * so] = s02 - s13;
    o[3 * so] = f02 + f13;
    o[4 * so] = f02 - f13;
    o[5 * so] = e3;
  }
  template <class V> static inline void gt(const V* m, int si, V* o, int so) {  // G^T: 6 -> 3
    const V m0 = m[0], m1 = m[si], m2 = m[2 * si], m3 = m[3 * si], m4 = m[4 * si], m5 = m[5 * si];
    const V s12 = m1 + m2, s34 = m3 + m4;
    o[0] = m0 * 0.25f - s12 * (1.0f / 6.0f) + s34 * (1.0f / 24.0f);
    o[so] = V(m2 - m1) * (1.0f / 6.0f) + V(m3 - m4) * (1.0f / 12.0f);
    o[2 * so] = V(s34 - s12) * (1.0f / 6.0f) + m5;
  }
};

// out (NO x NO, row-major) = T in T^T for in (NI x NI) and a 1-D transform T: NI -> NO.
template <int NI, int NO, class V, class F>
static inline void wino_2d(const V* in, V* out, F f) {
  V tmp[NO * NI];
  for (int j = 0; j < NI; ++j) f(in + j, NI, tmp + j, NI);      // columns
  for (int i = 0; i < NO; ++i) f(tmp + i * NI, 1, out + i * NO, 1);  // rows
}

static inline bool wino_eligible(const Conv2dParams& p) {
  return p.R == 3 && p.S == 3 && p.sh == 1 && p.sw == 1 && p.dh == 1 && p.dw == 1 && p.N > 0 && p.P > 0 &&
         p.Q > 0 && p.C > 0 && p.K > 0 && !portable_is_better(p);
}

struct WinoGeom {
  int A, TH, TW;
  int64_t tiles;  // over the batch
};
template <int M>
static inline WinoGeom wino_geom(const Conv2dParams& p) {
  WinoGeom g;
  g.A = M + 2;
  g.TH = (p.P + M - 1) / M;
  g.TW = (p.Q + M - 1) / M;
  g.tiles = int64_t(p.N) * g.TH * g.TW;
  return g;
}

// Tiles per forward chunk: the chunk's transformed input (alpha^2 x T x C) and GEMM output
// (alpha^2 x T x KB) take about 256 KiB; a multiple of the GEMM's register rows.
template <int VL, int M>
static inline int wino_fwd_chunk(const Conv2dParams& p, int KB, int MR) {
  constexpr int A2 = (M + 2) * (M + 2);
  int64_t t = 65536 / (int64_t(A2) * (p.C + KB));
  t = t / MR * MR;
  return int(t < MR ? MR : t > 16 * MR ? 16 * MR : t);
}

// Writes the transformed tiles [t0, t0 + Tn) of x [N,H,W,C] into V [alpha^2][T][C]. Pre: the
// convolution's input is max(0, x*ps[c] + pb[c]) (a BatchNormalization+ReLU before it, applied
// here as each value is loaded, with batchnorm_apply's expression: the same bits), the padding 0.
template <int VL, int M, bool Pre = false>
static void wino_input(float* Vt, int T, const float* x, int64_t t0, int Tn, const Conv2dParams& p,
                       const WinoGeom& g, const float* ps = nullptr, const float* pb = nullptr) {
  typedef Vec<VL> V;
  constexpr int A = M + 2;
  const int per_img = g.TH * g.TW;
  for (int t = 0; t < Tn; ++t) {
    const int64_t gt = t0 + t;
    const int n = int(gt / per_img), r = int(gt % per_img), th = r / g.TW, tw = r % g.TW;
    const int h0 = th * M - p.pt, w0 = tw * M - p.pl;
    const float* img = x + int64_t(n) * p.H * p.W * p.C;
    for (int c0 = 0; c0 < p.C; c0 += VL) {
      const int lanes = p.C - c0 < VL ? p.C - c0 : VL;
      V d[A * A], o[A * A], s, b;
      if constexpr (Pre) {
        s = lanes == VL ? vload<VL>(ps + c0) : vload_partial<VL>(ps + c0, lanes);
        b = lanes == VL ? vload<VL>(pb + c0) : vload_partial<VL>(pb + c0, lanes);
      }
      for (int i = 0; i < A; ++i) {
        const int h = h0 + i;
        for (int j = 0; j < A; ++j) {
          const int w = w0 + j;
          if (h < 0 || h >= p.H || w < 0 || w >= p.W) { d[i * A + j] = vzero<VL>(); continue; }
          const float* src = img + (int64_t(h) * p.W + w) * p.C + c0;
          V v = lanes == VL ? vload<VL>(src) : vload_partial<VL>(src, lanes);
          if constexpr (Pre) {
            v = v * s + b;
            v = v < vzero<VL>() ? vzero<VL>() : v;
          }
          d[i * A + j] = v;
        }
      }
      wino_2d<A, A>(d, o, [](const V* a, int si, V* b, int so) { Wino<M>::bt(a, si, b, so); });
      float* dst = Vt + int64_t(t) * p.C + c0;
      for (int xi = 0; xi < A * A; ++xi) {
        float* q = dst + int64_t(xi) * T * p.C;
        if (lanes == VL) vstore<VL>(q, o[xi]);
        else vstore_partial<VL>(q, o[xi], lanes);
      }
    }
  }
}

// U [alpha^2][K/KB][C][KB] = G g G^T for every (c, k) of w [3,3,C,K] (K tail zero-filled).
template <int VL, int M>
static void wino_weights(float* U, const float* w, int C, int K, int KB) {
  typedef Vec<VL> V;
  constexpr int A = M + 2;
  const int nkb = (K + KB - 1) / KB, NV = KB / VL;
  parallel_for(int64_t(nkb) * C, grain(int64_t(A) * A * KB * 8), [&](int64_t i0, int64_t i1, int) {
    for (int64_t it = i0; it < i1; ++it) {
      const int kb = int(it / C), c = int(it % C);
      for (int v = 0; v < NV; ++v) {
        const int k0 = kb * KB + v * VL, lanes = K - k0 < VL ? K - k0 : VL;
        V gi[9], o[A * A];
        for (int rs = 0; rs < 9; ++rs) {
          if (lanes <= 0) { gi[rs] = vzero<VL>(); continue; }
          const float* src = w + (int64_t(rs) * C + c) * K + k0;
          gi[rs] = lanes == VL ? vload<VL>(src) : vload_partial<VL>(src, lanes);
        }
        wino_2d<3, A>(gi, o, [](const V* a, int si, V* b, int so) { Wino<M>::g(a, si, b, so); });
        for (int xi = 0; xi < A * A; ++xi)
          vstore<VL>(U + ((int64_t(xi) * nkb + kb) * C + c) * KB + v * VL, o[xi]);
      }
    }
  });
}

// wr [3,3,K,C] = w [3,3,C,K] rotated by 180 degrees with C and K swapped (the data gradient's
// "weights" as a forward problem over dy).
static void wino_rotate_weights(float* wr, const float* w, int C, int K) {
  parallel_for(9 * int64_t(K), grain(C), [&](int64_t i0, int64_t i1, int) {
    for (int64_t it = i0; it < i1; ++it) {
      const int rs = int(it / K), k = int(it % K);
      const float* src = w + int64_t(8 - rs) * C * K + k;
      float* dst = wr + (int64_t(rs) * K + k) * C;
      for (int c = 0; c < C; ++c) dst[c] = src[int64_t(c) * K];
    }
  });
}

// Floats of the transformed weights U [alpha^2][K/KB][C][KB] at the front of the forward workspace.
template <int VL, int M>
static inline int64_t wino_u_floats(const Conv2dParams& p) {
  const int KB = conv_nv(p.K, VL) * VL;
  return round_up(int64_t((M + 2) * (M + 2)) * p.C * round_up(p.K, KB), 16);
}

// Floats of forward scratch: U, then per thread V and the GEMM output.
template <int VL, int M>
static int64_t wino_fwd_ws(const Conv2dParams& p, int nthreads) {
  constexpr int A2 = (M + 2) * (M + 2);
  const int NV = conv_nv(p.K, VL), KB = NV * VL, MR = NV == 2 ? Tile<VL>::MR2 : Tile<VL>::MR1;
  const int T = wino_fwd_chunk<VL, M>(p, KB, MR);
  const int nt = nthreads > 1 ? nthreads : 1;
  return wino_u_floats<VL, M>(p) + nt * round_up(int64_t(A2) * T * (p.C + KB), 16);
}

// y = conv(x, w) + b over already transformed weights U (wino_weights with this problem's KB).
template <int VL, int M>
static void wino_fwd_packed(float* y, const float* x, const float* U, const float* b, float* scratch,
                            const Conv2dParams& p, bool accumulate, const float* ps = nullptr,
                            const float* pb = nullptr) {
  typedef Vec<VL> V;
  constexpr int A = M + 2, A2 = A * A;
  const WinoGeom g = wino_geom<M>(p);
  const int NV = conv_nv(p.K, VL), KB = NV * VL, nkb = (p.K + KB - 1) / KB;
  const int MR = NV == 2 ? Tile<VL>::MR2 : Tile<VL>::MR1;
  const int T = wino_fwd_chunk<VL, M>(p, KB, MR);
  const int64_t chunks = (g.tiles + T - 1) / T, per_thread = round_up(int64_t(A2) * T * (p.C + KB), 16);
  const int per_img = g.TH * g.TW;
  const bool relu = p.relu != 0;
  parallel_for(chunks, grain(int64_t(T) * A2 * p.C * KB * nkb), [&](int64_t c0, int64_t c1, int tid) {
    float* Vt = scratch + tid * per_thread;
    float* Mt = Vt + int64_t(A2) * T * p.C;
    for (int64_t ch = c0; ch < c1; ++ch) {
      const int64_t t0 = ch * T;
      const int Tn = int(g.tiles - t0 < T ? g.tiles - t0 : T);
      if (ps) wino_input<VL, M, true>(Vt, T, x, t0, Tn, p, g, ps, pb);
      else wino_input<VL, M>(Vt, T, x, t0, Tn, p, g);
      for (int kb = 0; kb < nkb; ++kb) {
        for (int xi = 0; xi < A2; ++xi) {
          const float* Uk = U + (int64_t(xi) * nkb + kb) * p.C * KB;
          float* Mx = Mt + int64_t(xi) * T * KB;
          const float* Vx = Vt + int64_t(xi) * T * p.C;
          // M[xi] = V[xi] U[xi]: the direct forward tile with a 1x1 kernel over C channels.
          if (NV == 2)
            conv_fwd_row<VL, 2, Tile<VL>::MR2>(Mx, KB, KB, Vx, p.C, 0, Uk, nullptr, p.C, 1, 1, 0, p.C, Tn, false,
                                               false);
          else
            conv_fwd_row<VL, 1, Tile<VL>::MR1>(Mx, KB, KB, Vx, p.C, 0, Uk, nullptr, p.C, 1, 1, 0, p.C, Tn, false,
                                               false);
        }
        // Output transform of this K block.
        for (int t = 0; t < Tn; ++t) {
          const int64_t gt = t0 + t;
          const int n = int(gt / per_img), r = int(gt % per_img), oh0 = (r / g.TW) * M, ow0 = (r % g.TW) * M;
          const int mh = p.P - oh0 < M ? p.P - oh0 : M, mw = p.Q - ow0 < M ? p.Q - ow0 : M;
          for (int v = 0; v < NV; ++v) {
            const int k0 = kb * KB + v * VL, lanes = p.K - k0 < VL ? p.K - k0 : VL;
            if (lanes <= 0) break;
            V m[A2], o[M * M];
            for (int xi = 0; xi < A2; ++xi) m[xi] = vload<VL>(Mt + (int64_t(xi) * T + t) * KB + v * VL);
            wino_2d<A, M>(m, o, [](const V* a, int si, V* bb, int so) { Wino<M>::at(a, si, bb, so); });
            const V bias = !b ? vzero<VL>() : lanes == VL ? vload<VL>(b + k0) : vload_partial<VL>(b + k0, lanes);
            for (int i = 0; i < mh; ++i)
              for (int j = 0; j < mw; ++j) {
                V val = o[i * M + j] + bias;
                if (relu) val = val < vzero<VL>() ? vzero<VL>() : val;
                float* dst = y + ((int64_t(n) * p.P + oh0 + i) * p.Q + ow0 + j) * p.K + k0;
                if (lanes == VL) {
                  if (accumulate) val += vload<VL>(dst);
                  vstore<VL>(dst, val);
                } else {
                  if (accumulate) val += vload_partial<VL>(dst, lanes);
                  vstore_partial<VL>(dst, val, lanes);
                }
              }
          }
        }
      }
    }
  });
}

// ps, pb (both or neither): the input is max(0, x*ps + pb) per channel (wino_input).
template <int VL, int M>
static void wino_forward(float* y, const float* x, const float* w, const float* b, float* ws, const Conv2dParams& p,
                         const float* ps = nullptr, const float* pb = nullptr) {
  const int KB = conv_nv(p.K, VL) * VL;
  float* U = ws;
  wino_weights<VL, M>(U, w, p.C, p.K, KB);
  wino_fwd_packed<VL, M>(y, x, U, b, ws + wino_u_floats<VL, M>(p), p, false, ps, pb);
}

// Data gradient (stride 1): the forward algorithm over dy with rotated weights (q from
// bwd_data_as_forward). Workspace: the forward problem's, then the rotated weights.
template <int VL, int M>
static int64_t wino_bwd_data_ws(const Conv2dParams& q, int nthreads) {
  return wino_fwd_ws<VL, M>(q, nthreads) + int64_t(9) * q.C * q.K;
}

template <int VL, int M>
static void wino_backward_data(float* dx, const float* dy, const float* w, float* ws, const Conv2dParams& q,
                               bool accumulate) {
  // q: C = the layer's K, K = the layer's C.
  const int KB = conv_nv(q.K, VL) * VL;
  float* wr = ws + wino_fwd_ws<VL, M>(q, get_num_threads());
  wino_rotate_weights(wr, w, q.K, q.C);
  float* U = ws;
  wino_weights<VL, M>(U, wr, q.C, q.K, KB);
  Conv2dParams f = q;
  f.relu = 0;
  wino_fwd_packed<VL, M>(dx, dy, U, nullptr, ws + wino_u_floats<VL, M>(q), f, accumulate);
}

// Weight gradient. Images are split into fixed blocks (reduce_blocks: at most 16, fewer when the
// transformed partials W^ [alpha^2][C][Kp] + db [Kp] would pass 8 MiB, but 4 at least); each
// block sums its tiles in order into its own partial, and the partials are added in block order
// and transformed back once: the same bits on any thread count, in one parallel region (a region
// per chunk of tiles costs more than the chunk on a busy machine, where the pool's threads sleep
// sooner).
static inline int wino_dw_blocks(const Conv2dParams& p, int64_t stride) {
  const int64_t cap = (int64_t(1) << 21) / stride;
  return reduce_blocks(p.N, cap < 4 ? 4 : cap);
}

// Tiles per chunk: about 2 MiB of transformed tiles (measured with bench/native; smaller chunks
// re-read W^ too often).
template <int VL, int M>
static inline int wino_dw_chunk(const Conv2dParams& p, int Kp) {
  constexpr int A2 = (M + 2) * (M + 2);
  const int64_t t = (int64_t(1) << 19) / (int64_t(A2) * (p.C + Kp));
  return int(t < 16 ? 16 : t > 1024 ? 1024 : t);
}

// Workspace: [one partial per block][per thread: X chunk, D chunk]
template <int VL, int M>
static int64_t wino_bwd_weight_ws(const Conv2dParams& p, int nthreads) {
  constexpr int A2 = (M + 2) * (M + 2);
  const int KB = conv_nv(p.K, VL) * VL, Kp = int(round_up(p.K, KB));
  const int64_t stride = int64_t(A2) * p.C * Kp + Kp;
  const int T = wino_dw_chunk<VL, M>(p, Kp);
  const int nt = nthreads > 1 ? nthreads : 1;
  return wino_dw_blocks(p, stride) * stride + nt * round_up(int64_t(A2) * T * (p.C + Kp), 16);
}

// D [alpha^2][T][Kp] = A e A^T for the dy tiles [t0, t0 + Tn) (K tail and rows past P zero).
template <int VL, int M>
static void wino_dy_tiles(float* D, int T, int Kp, const float* dy, int64_t t0, int Tn, const Conv2dParams& p,
                          const WinoGeom& g) {
  typedef Vec<VL> V;
  constexpr int A = M + 2;
  const int per_img = g.TH * g.TW;
  for (int t = 0; t < Tn; ++t) {
    const int64_t gt = t0 + t;
    const int n = int(gt / per_img), r = int(gt % per_img), oh0 = (r / g.TW) * M, ow0 = (r % g.TW) * M;
    for (int k0 = 0; k0 < Kp; k0 += VL) {
      const int lanes = p.K - k0 < VL ? p.K - k0 : VL;
      V e[M * M], o[A * A];
      for (int i = 0; i < M; ++i)
        for (int j = 0; j < M; ++j) {
          const int oh = oh0 + i, ow = ow0 + j;
          if (oh >= p.P || ow >= p.Q || lanes <= 0) { e[i * M + j] = vzero<VL>(); continue; }
          const float* src = dy + ((int64_t(n) * p.P + oh) * p.Q + ow) * p.K + k0;
          e[i * M + j] = lanes == VL ? vload<VL>(src) : vload_partial<VL>(src, lanes);
        }
      wino_2d<M, A>(e, o, [](const V* a, int si, V* b, int so) { Wino<M>::a(a, si, b, so); });
      for (int xi = 0; xi < A * A; ++xi) vstore<VL>(D + (int64_t(xi) * T + t) * Kp + k0, o[xi]);
    }
  }
}

// W^[xi][:, one K block of KB] += X[xi]^T D[xi] over Tn tiles.
template <int VL, int NV>
static void wino_dw_gemm(float* Wx, int Kp, const float* Xx, const float* Dx, int C, int Tn) {
  constexpr int MC = NV == 2 ? Tile<VL>::MR2 : Tile<VL>::MR1, KB = NV * VL;
  int c0 = 0;
  for (; c0 + MC <= C; c0 += MC)
    conv_bwd_w_tile<VL, MC, NV>(Wx + int64_t(c0) * Kp, Kp, KB, Xx + c0, 0, C, Dx, Kp, 1, Tn);
  float* o = Wx + int64_t(c0) * Kp;
  const float* xo = Xx + c0;
#define CNNBP_TAIL(m) \
  case m:             \
    if constexpr (m < MC) conv_bwd_w_tile<VL, m, NV>(o, Kp, KB, xo, 0, C, Dx, Kp, 1, Tn); \
    break;
  switch (C - c0) {
    CNNBP_TAIL(1) CNNBP_TAIL(2) CNNBP_TAIL(3) CNNBP_TAIL(4) CNNBP_TAIL(5) CNNBP_TAIL(6) CNNBP_TAIL(7)
    CNNBP_TAIL(8) CNNBP_TAIL(9) CNNBP_TAIL(10) CNNBP_TAIL(11) CNNBP_TAIL(12) CNNBP_TAIL(13)
    default: break;
  }
#undef CNNBP_TAIL
}

// dy: [N,P,Q,K]  x: [N,H,W,C]  dw: [3,3,C,K]  db: [K] or null  ps, pb: as wino_forward's
template <int VL, int M>
static void wino_backward_weight(float* dw, float* db, const float* dy, const float* x, float* ws,
                                 const Conv2dParams& p, const float* ps = nullptr, const float* pb = nullptr) {
  typedef Vec<VL> V;
  constexpr int A = M + 2, A2 = A * A;
  const WinoGeom g = wino_geom<M>(p);
  const int NV = conv_nv(p.K, VL), KB = NV * VL, Kp = int(round_up(p.K, KB)), nkb = Kp / KB;
  const int64_t nw = int64_t(A2) * p.C * Kp, stride = nw + Kp;  // add_block_partials' layout
  const int nb = wino_dw_blocks(p, stride), T = wino_dw_chunk<VL, M>(p, Kp);
  const int64_t per_thread = round_up(int64_t(A2) * T * (p.C + Kp), 16), per_img = int64_t(g.TH) * g.TW;
  float* scratch = ws + nb * stride;
  const int64_t per_block = per_img * A2 * p.C * Kp * ((int64_t(p.N) + nb - 1) / nb);
  parallel_blocks(nb, grain(per_block), [&](int b, int tid) {
    float* Wb = ws + b * stride;
    float* dbb = Wb + nw;
    for (int64_t i = 0; i < nw + Kp; ++i) Wb[i] = 0.0f;
    float* Xt = scratch + tid * per_thread;
    float* Dt = Xt + int64_t(A2) * T * p.C;
    const int64_t n0 = block_begin(p.N, nb, b), n1 = block_begin(p.N, nb, b + 1);
    for (int64_t t0 = n0 * per_img; t0 < n1 * per_img; t0 += T) {
      const int Tn = int(n1 * per_img - t0 < T ? n1 * per_img - t0 : T);
      if (ps) wino_input<VL, M, true>(Xt, T, x, t0, Tn, p, g, ps, pb);
      else wino_input<VL, M>(Xt, T, x, t0, Tn, p, g);
      wino_dy_tiles<VL, M>(Dt, T, Kp, dy, t0, Tn, p, g);
      for (int xi = 0; xi < A2; ++xi)
        for (int kb = 0; kb < nkb; ++kb) {
          float* Wx = Wb + int64_t(xi) * p.C * Kp + kb * KB;
          const float* Xx = Xt + int64_t(xi) * T * p.C;
          const float* Dx = Dt + int64_t(xi) * T * Kp + kb * KB;
          if (NV == 2) wino_dw_gemm<VL, 2>(Wx, Kp, Xx, Dx, p.C, Tn);
          else wino_dw_gemm<VL, 1>(Wx, Kp, Xx, Dx, p.C, Tn);
        }
    }
    if (db) {
      const float* dyb = dy + n0 * p.P * p.Q * p.K;
      for (int64_t px = 0; px < (n1 - n0) * p.P * p.Q; ++px)
        for (int k = 0; k < p.K; ++k) dbb[k] += dyb[px * p.K + k];
    }
  });
  // Partials in block order into block 0's (W^ and db), then W^ -> dw.
  add_block_partials(ws, ws + nw, ws + stride, nw, Kp, nb);
  const int nkv = (p.K + VL - 1) / VL;
  parallel_for(int64_t(p.C) * nkv, grain(int64_t(A2) * VL * 4), [&](int64_t i0, int64_t i1, int) {
    for (int64_t it = i0; it < i1; ++it) {
      const int c = int(it / nkv), k0 = int(it % nkv) * VL, lanes = p.K - k0 < VL ? p.K - k0 : VL;
      V m[A2], o[9];
      for (int xi = 0; xi < A2; ++xi) m[xi] = vload<VL>(ws + (int64_t(xi) * p.C + c) * Kp + k0);
      wino_2d<A, 3>(m, o, [](const V* a, int si, V* bb, int so) { Wino<M>::gt(a, si, bb, so); });
      for (int rs = 0; rs < 9; ++rs) {
        float* dst = dw + (int64_t(rs) * p.C + c) * p.K + k0;
        if (lanes == VL) vstore<VL>(dst, o[rs]);
        else vstore_partial<VL>(dst, o[rs], lanes);
      }
    }
  });
  if (db)
    for (int k = 0; k < p.K; ++k) db[k] = ws[nw + k];
}

// ---- Choosing the algorithm (the table's conv2d entries) ----------------------------------------

enum ConvPass : int { kPassForward = 0, kPassData = 1, kPassWeight = 2 };

// Whether pass `pass` of p can run Winograd (the data gradient as a forward problem over dy).
static inline bool wino_pass_ok(const Conv2dParams& p, int pass, Conv2dParams* q) {
  if (!wino_eligible(p)) return false;
  if (pass != kPassData) return true;
  return bwd_data_as_forward(p, q) && wino_eligible(*q);
}

// The fixed rule (CNNBP_CONV_ALGO unset), from bench/native on a Zen 4 machine's avx512 and avx2
// paths (bench/README.md): F(4x4) ran each pass 1.7-2.4x (AVX-512) and 1.3-2.0x (AVX2) faster than
// direct from 32 channels; at 16, 1.1-1.3x with AVX-512 but 0.9-1.05x with AVX2 (8-float vectors
// make the 16-channel GEMMs short); a first layer (3 channels) 4-10x slower (the transforms
// dominate). Depends on the shape and the vector width only: the same bits on every run and thread
// count.
template <int VL>
static inline int wino_rule(const Conv2dParams& p, int pass) {
  const int cin = pass == kPassData ? p.K : p.C, cout = pass == kPassData ? p.C : p.K;
  const int least = VL >= 16 ? 16 : 32;
  return cin >= least && cout >= least ? kConvWinograd4 : kConvDirect;
}

template <int VL> static int64_t conv2d_workspace_algo(const Conv2dParams& p, int nthreads);
template <int VL> static void conv2d_forward_algo(float* y, const float* x, const float* w, const float* b, float* ws,
                                                  const Conv2dParams& p);
template <int VL> static void conv2d_backward_data_algo(float* dx, const float* dy, const float* w, float* ws,
                                                        const Conv2dParams& p, bool accumulate);
template <int VL> static void conv2d_backward_weight_algo(float* dw, float* db, const float* dy, const float* x,
                                                          float* ws, const Conv2dParams& p);

// The algorithm pass `pass` of p runs.
template <int VL>
static int conv_algo_for(const Conv2dParams& p, int pass) {
  Conv2dParams q;
  if (!wino_pass_ok(p, pass, &q)) return kConvDirect;
  if (p.algo != kConvAuto) return p.algo;
  const int s = conv_algo_setting();
  if (s > 0) return s;
  if (s < 0) return wino_rule<VL>(p, pass);
  // Measured (conv_algo.cpp keeps the cache outside this ISA object).
  static constexpr Conv2dKernels mine{conv2d_workspace_algo<VL>, conv2d_forward_algo<VL>,
                                      conv2d_backward_data_algo<VL>, conv2d_backward_weight_algo<VL>};
  return conv_algo_measured(mine, p, pass);
}

// Workspace for every algorithm the passes of p may run (an "auto" layer is measured here, when
// the network plans it, so its first step runs at full speed).
template <int VL>
static int64_t conv2d_workspace_algo(const Conv2dParams& p, int nthreads) {
  int64_t most = conv2d_workspace_blocked<VL>(p, nthreads);
  for (int pass = 0; pass < 3; ++pass) {
    Conv2dParams q;
    if (!wino_pass_ok(p, pass, &q)) continue;
    const int a = conv_algo_for<VL>(p, pass);
    int64_t need = 0;
    if (a == kConvWinograd2)
      need = pass == kPassForward ? wino_fwd_ws<VL, 2>(p, nthreads)
             : pass == kPassData  ? wino_bwd_data_ws<VL, 2>(q, nthreads)
                                  : wino_bwd_weight_ws<VL, 2>(p, nthreads);
    else if (a == kConvWinograd4)
      need = pass == kPassForward ? wino_fwd_ws<VL, 4>(p, nthreads)
             : pass == kPassData  ? wino_bwd_data_ws<VL, 4>(q, nthreads)
                                  : wino_bwd_weight_ws<VL, 4>(p, nthreads);
    most = most > need ? most : need;
  }
  return most;
}

template <int VL>
static void conv2d_forward_algo(float* y, const float* x, const float* w, const float* b, float* ws,
                                const Conv2dParams& p) {
  switch (conv_algo_for<VL>(p, kPassForward)) {
    case kConvWinograd2: return wino_forward<VL, 2>(y, x, w, b, ws, p);
    case kConvWinograd4: return wino_forward<VL, 4>(y, x, w, b, ws, p);
    default: return conv2d_forward_blocked<VL>(y, x, w, b, ws, p);
  }
}

template <int VL>
static void conv2d_backward_data_algo(float* dx, const float* dy, const float* w, float* ws, const Conv2dParams& p,
                                      bool accumulate) {
  Conv2dParams q;
  const int a = conv_algo_for<VL>(p, kPassData);
  if (a != kConvDirect && bwd_data_as_forward(p, &q)) {
    if (a == kConvWinograd2) return wino_backward_data<VL, 2>(dx, dy, w, ws, q, accumulate);
    return wino_backward_data<VL, 4>(dx, dy, w, ws, q, accumulate);
  }
  conv2d_backward_data_blocked<VL>(dx, dy, w, ws, p, accumulate);
}

template <int VL>
static void conv2d_backward_weight_algo(float* dw, float* db, const float* dy, const float* x, float* ws,
                                        const Conv2dParams& p) {
  switch (conv_algo_for<VL>(p, kPassWeight)) {
    case kConvWinograd2: return wino_backward_weight<VL, 2>(dw, db, dy, x, ws, p);
    case kConvWinograd4: return wino_backward_weight<VL, 4>(dw, db, dy, x, ws, p);
    default: return conv2d_backward_weight_blocked<VL>(dw, db, dy, x, ws, p);
  }
}

// A BatchNormalization+ReLU read through the convolution's input load (kernels.h): where both the
// forward and the weight gradient of p run Winograd (the data gradient does not read x).
static inline bool conv_is_wino(int a) { return a == kConvWinograd2 || a == kConvWinograd4; }

template <int VL>
static bool conv2d_prologue_ok_algo(const Conv2dParams& p) {
  return conv_is_wino(conv_algo_for<VL>(p, kPassForward)) && conv_is_wino(conv_algo_for<VL>(p, kPassWeight));
}

template <int VL>
static void conv2d_forward_pre_algo(float* y, const float* x, const float* ps, const float* pb, const float* w,
                                    const float* b, float* ws, const Conv2dParams& p) {
  const int a = conv_algo_for<VL>(p, kPassForward);
  if (!conv_is_wino(a)) throw std::logic_error("conv2d_forward_pre: the forward pass of this shape is not Winograd");
  if (a == kConvWinograd2) wino_forward<VL, 2>(y, x, w, b, ws, p, ps, pb);
  else wino_forward<VL, 4>(y, x, w, b, ws, p, ps, pb);
}

template <int VL>
static void conv2d_backward_weight_pre_algo(float* dw, float* db, const float* dy, const float* x, const float* ps,
                                            const float* pb, float* ws, const Conv2dParams& p) {
  const int a = conv_algo_for<VL>(p, kPassWeight);
  if (!conv_is_wino(a))
    throw std::logic_error("conv2d_backward_weight_pre: the weight gradient of this shape is not Winograd");
  if (a == kConvWinograd2) wino_backward_weight<VL, 2>(dw, db, dy, x, ws, p, ps, pb);
  else wino_backward_weight<VL, 4>(dw, db, dy, x, ws, p, ps, pb);
}
