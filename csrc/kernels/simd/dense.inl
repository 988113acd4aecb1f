// dense as a small GEMM (float; AVX2 / AVX-512 tables): C[M,N] = A[M,K] B[K,N] (+ bias).
// A is read in place through strides (so x^T needs no copy). B is packed into column panels
// [N/KB][K][KB] with a zero-filled tail, once per call, unless it is one panel of contiguous rows
// (N <= KB, B(k, n) = b[k*bk + n]: the forward's weights of a narrow layer, dy): then it is read in
// place, each row's KB-float load running into the next row; the lanes past N hold another row's
// values, are accumulated like the rest and never stored. The last K block, whose last load would
// run past B's end, is read from a copy followed by zeros. An MR x KB tile of C stays in registers
// over each K block. Parallel over (row range, column panel) pairs: no two threads write the same
// C, and every element of C is one sequential sum over k, so the thread count never changes the bits.

// B(k, n) = b[k*bk + n*bn]  ->  bp [N/KB][K][KB]
static void pack_b(float* bp, const float* b, int64_t bk, int64_t bn, int K, int N, int KB) {
  const int nnb = (N + KB - 1) / KB;
  if (bk == 1 && bn != 1) {  // B^T stored row-major (backward-data's W^T): read its rows, write columns
    parallel_for(int64_t(nnb), grain(int64_t(K) * KB), [&](int64_t i0, int64_t i1, int) {
      for (int64_t nb = i0; nb < i1; ++nb) {
        float* panel = bp + nb * int64_t(K) * KB;
        const int nv = imin(KB, N - int(nb) * KB);
        const float* src = b + nb * KB * bn;
        // rows of the panel written whole (a panel's source, KB rows of B^T, is a few KB: in L1)
        for (int k = 0; k < K; ++k) {
          float* dst = panel + int64_t(k) * KB;
          for (int j = 0; j < nv; ++j) dst[j] = src[int64_t(j) * bn + k];
          for (int j = nv; j < KB; ++j) dst[j] = 0.0f;
        }
      }
    });
    return;
  }
  parallel_for(int64_t(nnb) * K, grain(KB), [&](int64_t i0, int64_t i1, int) {
    int nb = int(i0 / K), k = int(i0 % K);  // then stepped: a division per row cost more than its copy
    for (int64_t i = i0; i < i1; ++i, k = k + 1 == K ? 0 : k + 1, nb += k == 0) {
      float* dst = bp + i * KB;
      const int nv = imin(KB, N - nb * KB);  // valid columns of this panel
      const float* src = b + int64_t(k) * bk + int64_t(nb) * KB * bn;
      if (bn == 1) {  // rows of B contiguous (the forward's weights, dy): a plain vectorisable copy
        for (int j = 0; j < nv; ++j) dst[j] = src[j];
      } else {
        for (int j = 0; j < nv; ++j) dst[j] = src[int64_t(j) * bn];
      }
      for (int j = nv; j < KB; ++j) dst[j] = 0.0f;
    }
  });
}

// accumulate: start from C (a later K block) instead of from the bias.
template <int VL, int MR, int NV>
static inline void gemm_tile(float* c, int64_t ldc, int nvalid, const float* a, int64_t am, int64_t ak, const float* bp,
                             int64_t bs, int K, const float* bias, bool accumulate) {
  typedef Vec<VL> V;
  constexpr int KB = NV * VL;
  V acc[MR][NV];
  for (int v = 0; v < NV; ++v) {
    const int lanes = nvalid - v * VL;
    if (accumulate) {
      for (int i = 0; i < MR; ++i)
        acc[i][v] = lanes >= VL ? vload<VL>(c + i * ldc + v * VL)
                                : vload_partial<VL>(c + i * ldc + v * VL, lanes > 0 ? lanes : 0);
      continue;
    }
    const V b0 = bias ? (lanes >= VL ? vload<VL>(bias + v * VL) : vload_partial<VL>(bias + v * VL, lanes > 0 ? lanes : 0))
                      : vzero<VL>();
    for (int i = 0; i < MR; ++i) acc[i][v] = b0;
  }
  for (int k = 0; k < K; ++k) {
    V w[NV];
    for (int v = 0; v < NV; ++v) w[v] = vload<VL>(bp + int64_t(k) * bs + v * VL);
    const float* ak_ = a + k * ak;
    for (int i = 0; i < MR; ++i) {
      const V xb = vbroadcast<VL>(ak_[i * am]);
      for (int v = 0; v < NV; ++v) acc[i][v] += xb * w[v];
    }
  }
  for (int i = 0; i < MR; ++i) {
    float* o = c + i * ldc;
    for (int v = 0; v < NV; ++v) {
      const int lanes = nvalid - v * VL;
      if (lanes >= VL) vstore<VL>(o + v * VL, acc[i][v]);
      else if (lanes > 0) vstore_partial<VL>(o + v * VL, acc[i][v], lanes);
    }
  }
}

// K block of the GEMM: KC rows of a B panel (KC*KB floats) stay in L1 across a range's row tiles.
constexpr int kGemmKC = 256;

// B's rows for one column panel: the K blocks before row kin at b, the rest at tail, both with row
// stride bs. Packed: all at tail (kin = 0, bs = KB). In place: kin is the start of the last block,
// whose rows tail holds as a copy with zeros after it (so the K blocks, and the sums, are the same).
struct PanelB {
  const float* b;
  int64_t bs;
  int kin;
  const float* tail;
};

// One column panel, rows [m0, m1) of C in tiles of at most MR rows of near-equal size: for each
// K block of KC rows (the B sub-panel stays in L1), every row tile.
template <int VL, int NV>
static void gemm_panel(float* c, int64_t ldc, const float* a, int64_t am, int64_t ak, const PanelB& pb,
                       const float* bias, int m0, int m1, int n0, int N, int K, bool add_to_c) {
  constexpr int MR = NV == 2 ? Tile<VL>::MR2 : Tile<VL>::MR1;
  constexpr int KB = NV * VL, KC = kGemmKC;
  const int nvalid = N - n0;
  const int ntile = (m1 - m0 + MR - 1) / MR;
  for (int k0 = 0; k0 < K; k0 += KC) {
    const int kc = imin(KC, K - k0);
    const bool acc = add_to_c || k0 > 0;
    const float* bt = k0 < pb.kin ? pb.b + k0 * pb.bs : pb.tail + int64_t(k0 - pb.kin) * pb.bs;
    const int64_t bs = pb.bs;
    const float* bsv = bias ? bias + n0 : nullptr;
    for (int t = 0; t < ntile; ++t) {
      const int mr = m0 + int(int64_t(m1 - m0) * t / ntile), rows = m0 + int(int64_t(m1 - m0) * (t + 1) / ntile) - mr;
      float* ct = c + mr * ldc + n0;
      const float* at = a + mr * am + k0 * ak;
      if (rows == MR) {
        gemm_tile<VL, MR, NV>(ct, ldc, nvalid, at, am, ak, bt, bs, kc, bsv, acc);
        continue;
      }
#define CNNBP_TAIL(m) \
  case m:             \
    if constexpr (m < MR) gemm_tile<VL, m, NV>(ct, ldc, nvalid, at, am, ak, bt, bs, kc, bsv, acc); \
    break;
      switch (rows) {
        CNNBP_TAIL(1) CNNBP_TAIL(2) CNNBP_TAIL(3) CNNBP_TAIL(4) CNNBP_TAIL(5) CNNBP_TAIL(6) CNNBP_TAIL(7)
        CNNBP_TAIL(8) CNNBP_TAIL(9) CNNBP_TAIL(10) CNNBP_TAIL(11) CNNBP_TAIL(12) CNNBP_TAIL(13)
        default: break;
      }
#undef CNNBP_TAIL
    }
  }
}

// Work items are (column panel, row range): panels first, so a thread keeps one B panel hot
// across its rows; rows are split further (evenly, at least 4 per range) when there are fewer than
// two panels per thread, so that three row tiles do not leave one of two threads idle half the time.
template <int VL, int NV>
static void gemm_packed(float* c, int64_t ldc, const float* a, int64_t am, int64_t ak, const PanelB& pb0,
                        const float* bias, int M, int N, int K, bool add_to_c) {
  constexpr int KB = NV * VL;
  const int nnb = (N + KB - 1) / KB;
  const int nt = get_num_threads();
  const int mchunks = nnb >= 2 * nt ? 1 : imin((M + 3) / 4, (2 * nt + nnb - 1) / nnb);
  const int64_t items = int64_t(nnb) * mchunks;
  parallel_for(items, grain(int64_t(K) * KB * ((M + mchunks - 1) / mchunks)), [=](int64_t i0, int64_t i1, int) {
    for (int64_t it = i0; it < i1; ++it) {
      const int nb = int(it / mchunks), mc = int(it % mchunks);
      const int r0 = int(int64_t(M) * mc / mchunks), r1 = int(int64_t(M) * (mc + 1) / mchunks);
      PanelB pb = pb0;
      pb.tail += int64_t(nb) * K * KB;  // packed: panel nb (in place there is one panel)
      gemm_panel<VL, NV>(c, ldc, a, am, ak, pb, bias, r0, r1, nb * KB, N, K, add_to_c);
    }
  });
}

static inline int gemm_nv(int N, int VL) { return N <= VL ? 1 : 2; }

// C = A B with B(k, n) = b[k*bk + n*bn], packed into ws first; add_to_c: C += A B (no bias).
template <int VL>
static void gemm(float* c, int64_t ldc, const float* a, int64_t am, int64_t ak, const float* b, int64_t bk, int64_t bn,
                 const float* bias, int M, int N, int K, float* ws, bool add_to_c = false) {
  if (M <= 0 || N <= 0) return;  // empty result (the tiling below divides by the panel count)
  if (K <= 0) {                  // empty sum: the bias, or zeros
    if (add_to_c) return;
    for (int m = 0; m < M; ++m)
      for (int n = 0; n < N; ++n) c[m * ldc + n] = bias ? bias[n] : 0.0f;
    return;
  }
  const int NV = gemm_nv(N, VL);
  const int KB = NV * VL;
  PanelB pb{ws, KB, 0, ws};
  if (bn == 1 && bk == N && N <= KB) {  // one panel, a contiguous matrix: read in place
    // the last K block (rows [kin, K)) is copied, with KB - N zeros after it, since its last row's
    // load would run past B's end (workspace: at most KC*N + KB floats, within dense_ws)
    pb = PanelB{b, bk, N == KB ? K : (K - 1) / kGemmKC * kGemmKC, ws};
    const int64_t n0 = int64_t(pb.kin) * N, n1 = int64_t(K) * N;
    for (int64_t i = n0; i < n1; ++i) ws[i - n0] = b[i];
    for (int i = 0; i < KB; ++i) ws[n1 - n0 + i] = 0.0f;
  } else {
    pack_b(ws, b, bk, bn, K, N, KB);
  }
  if (NV == 2) gemm_packed<VL, 2>(c, ldc, a, am, ak, pb, bias, M, N, K, add_to_c);
  else gemm_packed<VL, 1>(c, ldc, a, am, ak, pb, bias, M, N, K, add_to_c);
}

template <int VL>
static int64_t dense_ws(int N, int I, int O) {
  // The largest packed B of the three passes: W (I x O), W^T (O x I), dy (N x O); an in-place B's
  // copied last block and its zeros (K*N + KB floats) fit in K*round_up(N, 2 VL) + 2 VL.
  const int64_t kb = 2 * VL;
  const int64_t a = int64_t(I) * round_up(O, kb), b = int64_t(O) * round_up(I, kb), c = int64_t(N) * round_up(O, kb);
  return (a > b ? (a > c ? a : c) : (b > c ? b : c)) + kb;
}

// x: [N,I]  w: [I,O]  b: [O] or null  y: [N,O]
template <int VL>
static void dense_forward_blocked(float* y, const float* x, const float* w, const float* b, int N, int I, int O, float* ws) {
  gemm<VL>(y, O, x, I, 1, w, O, 1, b, N, O, I, ws);
}

// dy: [N,O]  w: [I,O]  dx: [N,I]   (dx = dy W^T, or dx += dy W^T)
template <int VL>
static void dense_backward_data_blocked(float* dx, const float* dy, const float* w, int N, int I, int O, float* ws,
                                        bool accumulate) {
  gemm<VL>(dx, I, dy, O, 1, w, 1, O, nullptr, N, I, O, ws, accumulate);
}

// dy: [N,O]  x: [N,I]  dw: [I,O]  db: [O] or null   (dw = x^T dy)
template <int VL>
static void dense_backward_weight_blocked(float* dw, float* db, const float* dy, const float* x, int N, int I, int O,
                                          float* ws) {
  gemm<VL>(dw, O, x, 1, I, dy, O, 1, nullptr, I, O, N, ws);
  if (db) {
    for (int o = 0; o < O; ++o) db[o] = 0.0f;
    for (int n = 0; n < N; ++n)
      for (int o = 0; o < O; ++o) db[o] += dy[int64_t(n) * O + o];
  }
}
