// conv2d in bfloat16 with fp32 accumulation: AVX512_BF16's vdpbf16ps (16 lanes, each adding the
// products of a pair of bf16 values to an fp32 accumulator). Included by bf16_isa.cpp only.
//
// The layout is conv2d.inl's with the reduction over input channels taken in pairs: each image is
// converted (and zero-padded) into a thread's scratch as bf16 [Hp][Wp][Ce] with Ce = C rounded up
// to even (a zero channel for odd C), and the weights are packed to [K/KB][R][S][Ce/2][KB][2]: the
// 32-bit word at pair j of lane k holds w[.., 2j, k] and w[.., 2j+1, k]. A tile of MR output pixels
// x NV vectors of 16 output channels broadcasts one pair of input channels per pixel and issues
// MR*NV vdpbf16ps: 32 multiply-adds per instruction instead of vfmadd's 16. The data gradient is
// this forward kernel on dy, as in conv2d.inl (stride 1: rotated weights; strides: by phases);
// the weight gradient pairs output pixels instead of channels (its section below).

typedef uint16_t bf16_t;

struct Bf16Geom {
  int Hp, Wp, Ce;
  int64_t img;  // floats of scratch for one converted image (a multiple of 16: 64-byte aligned)
};

static inline Bf16Geom bf16_geom(const Conv2dParams& p) {
  Bf16Geom g;
  g.Hp = p.H + p.pt + p.pb;
  g.Wp = p.W + p.pl + p.pr;
  g.Ce = (p.C + 1) & ~1;
  g.img = round_up((int64_t(g.Hp) * g.Wp * g.Ce + 1) / 2, 16);
  return g;
}

// n floats -> n bf16 (vcvtneps2bf16: round to nearest even; bf16_bits in bf16.h is the same rule).
static inline void bf16_convert(bf16_t* dst, const float* src, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256bh h = _mm512_cvtneps_pbh(_mm512_loadu_ps(src + i));
    __builtin_memcpy(dst + i, &h, 32);
  }
  if (i < n) {
    const __mmask16 m = __mmask16((1u << (n - i)) - 1);
    const __m256bh h = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + i));
    __m256i hi;
    __builtin_memcpy(&hi, &h, 32);
    _mm256_mask_storeu_epi16(dst + i, m, hi);
  }
}

// Image n of x [N,H,W,C] as bf16 [Hp][Wp][Ce] in xp; borders: also write the zero borders (the
// first image a thread converts in a call; later ones leave them as they are).
static void bf16_image(bf16_t* xp, const float* x, int n, const Conv2dParams& p, const Bf16Geom& g, bool borders) {
  const int64_t prow = int64_t(g.Wp) * g.Ce, left = int64_t(p.pl) * g.Ce, inner = int64_t(p.W) * g.Ce;
  for (int r = 0; r < g.Hp; ++r) {
    const int h = r - p.pt;
    bf16_t* dst = xp + r * prow;
    if (h < 0 || h >= p.H) {
      if (borders) __builtin_memset(dst, 0, sizeof(bf16_t) * prow);
      continue;
    }
    if (borders) {
      __builtin_memset(dst, 0, sizeof(bf16_t) * left);
      __builtin_memset(dst + left + inner, 0, sizeof(bf16_t) * (prow - left - inner));
    }
    const float* src = x + (int64_t(n) * p.H + h) * p.W * p.C;
    if (g.Ce == p.C) {
      bf16_convert(dst + left, src, inner);
    } else {  // odd C (first layers: 1 or 3 channels): a zero channel after each pixel's C
      for (int w = 0; w < p.W; ++w) {
        bf16_t* o = dst + left + int64_t(w) * g.Ce;
        for (int c = 0; c < p.C; ++c) o[c] = bf16_bits(src[int64_t(w) * p.C + c]);
        o[p.C] = 0;
      }
    }
  }
}

// Packs an R x S kernel of Cp reduction channels and Kp output channels into bf16 pairs
// [Kp/KB][R][S][Cp/2][KB][2] (zero-filled tails); val(r, s, c, k) gives the weight. bp (if not
// null): the bias b (or zeros) over the padded output channels, as floats.
template <typename Val>
static void bf16_pack(bf16_t* wp, float* bp, const float* b, int R, int S, int Cp, int Kp, int KB, Val val) {
  const int CP = (Cp + 1) / 2, nkb = (Kp + KB - 1) / KB;
  for (int kb = 0; kb < nkb; ++kb)
    for (int r = 0; r < R; ++r)
      for (int s = 0; s < S; ++s)
        for (int j = 0; j < CP; ++j) {
          bf16_t* dst = wp + ((((int64_t(kb) * R + r) * S + s) * CP + j) * KB) * 2;
          for (int t = 0; t < KB; ++t) {
            const int k = kb * KB + t;
            for (int e = 0; e < 2; ++e) {
              const int c = 2 * j + e;
              dst[2 * t + e] = bf16_bits(k < Kp && c < Cp ? val(r, s, c, k) : 0.0f);
            }
          }
        }
  if (bp)
    for (int j = 0; j < nkb * KB; ++j) bp[j] = (b && j < Kp) ? b[j] : 0.0f;
}

// w [R,S,C,K] as the forward problem's kernel, or rotated (w'[r][s][k][c] = w[R-1-r][S-1-s][c][k],
// C and K swapped: the stride-1 data gradient as a forward problem).
static void bf16_pack_weights(bf16_t* wp, float* bp, const float* w, const float* b, int R, int S, int C, int K,
                              int KB, bool rotate) {
  if (rotate)
    bf16_pack(wp, bp, b, R, S, K, C, KB, [&](int r, int s, int c, int k) {
      return w[((int64_t(R - 1 - r) * S + (S - 1 - s)) * C + k) * K + c];
    });
  else
    bf16_pack(wp, bp, b, R, S, C, K, KB, [&](int r, int s, int c, int k) {
      return w[((int64_t(r) * S + s) * C + c) * K + k];
    });
}

// One output tile: MR pixels (input pixel stride xs_stride bf16) x NV vectors of 16 channels.
template <int MR, int NV>
static inline void bf16_fwd_tile(float* y, int ldy, int kvalid, const bf16_t* xs, int64_t xs_stride, int64_t x_row,
                                 const bf16_t* wp, const float* bias, int CP, int R, int S, int dh_row_mul,
                                 int64_t dw_Ce, bool relu, bool accumulate) {
  constexpr int KB = NV * 16;
  __m512 acc[MR][NV];
  for (int v = 0; v < NV; ++v) {
    const __m512 b = bias ? _mm512_loadu_ps(bias + v * 16) : _mm512_setzero_ps();
    for (int i = 0; i < MR; ++i) acc[i][v] = b;
  }
  // Width dilation 1: the pairs of a kernel row are contiguous in the input row and the weights.
  const bool flat = dw_Ce == 2 * CP;
  const int SJ = flat ? 1 : S, J = flat ? S * CP : CP;
  for (int r = 0; r < R; ++r) {
    const bf16_t* xr = xs + int64_t(r) * dh_row_mul * x_row;
    for (int s = 0; s < SJ; ++s) {
      const bf16_t* xq = xr + s * dw_Ce;
      const bf16_t* wq = wp + int64_t(r * S + s) * CP * KB * 2;
      for (int j = 0; j < J; ++j) {
        __m512bh w[NV];
        for (int v = 0; v < NV; ++v) {
          const __m512i wi = _mm512_loadu_si512(wq + (int64_t(j) * KB + v * 16) * 2);
          __builtin_memcpy(&w[v], &wi, 64);
        }
        for (int i = 0; i < MR; ++i) {
          uint32_t pair;
          __builtin_memcpy(&pair, xq + i * xs_stride + 2 * j, 4);
          const __m512i xi = _mm512_set1_epi32(int(pair));
          __m512bh xb;
          __builtin_memcpy(&xb, &xi, 64);
          for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], xb, w[v]);
        }
      }
    }
  }
  if (relu) {  // max(0, acc) returns acc when it is NaN: NaN propagates, as in the fp32 kernels
    const __m512 zero = _mm512_setzero_ps();
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_max_ps(zero, acc[i][v]);
  }
  for (int i = 0; i < MR; ++i) {
    float* yo = y + int64_t(i) * ldy;
    for (int v = 0; v < NV; ++v) {
      const int lanes = kvalid - v * 16;
      if (lanes <= 0) continue;
      const __mmask16 m = lanes >= 16 ? __mmask16(0xffff) : __mmask16((1u << lanes) - 1);
      __m512 o = acc[i][v];
      if (accumulate) o = _mm512_add_ps(o, _mm512_maskz_loadu_ps(m, yo + v * 16));
      _mm512_mask_storeu_ps(yo + v * 16, m, o);
    }
  }
}

template <int NV, int MR>
static inline void bf16_fwd_row(float* y, int ldy, int kvalid, const bf16_t* xs, int64_t xs_stride, int64_t x_row,
                                const bf16_t* wp, const float* bias, int CP, int R, int S, int dh, int64_t dw_Ce,
                                int Q, bool relu, bool accumulate) {
  int ow = 0;
  for (; ow + MR <= Q; ow += MR)
    bf16_fwd_tile<MR, NV>(y + int64_t(ow) * ldy, ldy, kvalid, xs + ow * xs_stride, xs_stride, x_row, wp, bias, CP, R,
                          S, dh, dw_Ce, relu, accumulate);
  const int rem = Q - ow;
  if (rem <= 0) return;
  float* yo = y + int64_t(ow) * ldy;
  const bf16_t* xo = xs + ow * xs_stride;
#define CNNBP_TAIL(m)                                                                                            \
  case m:                                                                                                        \
    if constexpr (m < MR)                                                                                        \
      bf16_fwd_tile<m, NV>(yo, ldy, kvalid, xo, xs_stride, x_row, wp, bias, CP, R, S, dh, dw_Ce, relu, accumulate); \
    break;
  switch (rem) {
    CNNBP_TAIL(1) CNNBP_TAIL(2) CNNBP_TAIL(3) CNNBP_TAIL(4) CNNBP_TAIL(5) CNNBP_TAIL(6) CNNBP_TAIL(7)
    CNNBP_TAIL(8) CNNBP_TAIL(9) CNNBP_TAIL(10) CNNBP_TAIL(11) CNNBP_TAIL(12) CNNBP_TAIL(13)
    default: break;
  }
#undef CNNBP_TAIL
}

// Forward driver over packed weights; img_ws: one converted image per thread (Bf16Geom::img floats
// each). Parallel over (image, K block), as the fp32 driver.
static void bf16_fwd_packed(float* y, const float* x, const bf16_t* wp, const float* bp, const Conv2dParams& p,
                            float* img_ws, int NV, bool accumulate, const YLayout* layout = nullptr) {
  const YLayout yl = layout ? *layout : dense_layout(p);
  const Bf16Geom g = bf16_geom(p);
  const int KB = NV * 16, nkb = (p.K + KB - 1) / KB, CP = g.Ce / 2;
  const int64_t x_row = int64_t(g.Wp) * g.Ce, xs_stride = int64_t(p.sw) * g.Ce, dw_Ce = int64_t(p.dw) * g.Ce;
  parallel_for(int64_t(p.N) * nkb, grain(int64_t(p.P) * p.Q * p.R * p.S * CP * KB), [&](int64_t i0, int64_t i1,
                                                                                         int tid) {
    bf16_t* mine = reinterpret_cast<bf16_t*>(img_ws + tid * g.img);
    int mine_n = -1;
    for (int64_t it = i0; it < i1; ++it) {
      const int n = int(it / nkb), kb = int(it % nkb);
      if (mine_n != n) {
        bf16_image(mine, x, n, p, g, mine_n < 0);
        mine_n = n;
      }
      const int kvalid = p.K - kb * KB;
      const bf16_t* wkb = wp + int64_t(kb) * p.R * p.S * CP * KB * 2;
      const float* bkb = bp ? bp + int64_t(kb) * KB : nullptr;
      for (int oh = 0; oh < p.P; ++oh) {
        float* yrow = y + int64_t(n) * yl.img + int64_t(oh) * yl.row + int64_t(kb) * KB;
        const bf16_t* xrow = mine + int64_t(oh) * p.sh * x_row;
        if (NV == 2)
          bf16_fwd_row<2, Tile<16>::MR2>(yrow, yl.pix, kvalid, xrow, xs_stride, x_row, wkb, bkb, CP, p.R, p.S, p.dh,
                                         dw_Ce, p.Q, p.relu != 0, accumulate);
        else
          bf16_fwd_row<1, Tile<16>::MR1>(yrow, yl.pix, kvalid, xrow, xs_stride, x_row, wkb, bkb, CP, p.R, p.S, p.dh,
                                         dw_Ce, p.Q, p.relu != 0, accumulate);
      }
    }
  });
}

// Workspace (floats): [one converted image per thread][packed bf16 weights][packed bias]
static int64_t bf16_fwd_ws(const Conv2dParams& p, int nthreads) {
  const Bf16Geom g = bf16_geom(p);
  const int KB = conv_nv(p.K, 16) * 16;
  const int64_t nt = nthreads > 1 ? nthreads : 1;
  return nt * g.img + round_up(int64_t(p.R) * p.S * (g.Ce / 2) * round_up(p.K, KB), 16) + round_up(p.K, KB);
}

// ---- strided data gradient ----------------------------------------------------------------------
// By phases, with conv2d.inl's for_each_bwd_phase: per phase, dy (padded or cropped into an fp32
// copy when the phase needs it) is the input of a stride-1 forward problem whose outputs land on
// every sh-th row and sw-th column of dx.

// Workspace (floats): [dy copy][one converted image per thread][packed weights], the most any phase needs.
static int64_t bf16_bwd_phases_ws(const Conv2dParams& p, int nthreads) {
  const int64_t nt = nthreads > 1 ? nthreads : 1;
  const int KB = conv_nv(p.C, 16) * 16;
  int64_t most = 0;
  for (int a = 0; a < p.sh; ++a)
    for (int b = 0; b < p.sw; ++b) {
      const BwdPhase rh = bwd_phase(a, p.H, p.P, p.R, p.sh, p.dh, p.pt);
      const BwdPhase rw = bwd_phase(b, p.W, p.Q, p.S, p.sw, p.dw, p.pl);
      if (rh.n == 0 || rw.n == 0 || rh.taps == 0 || rw.taps == 0) continue;
      const Conv2dParams f = phase_problem(p, rh, rw);
      const int64_t need = round_up(int64_t(p.N) * f.H * f.W * f.C, 16) + nt * bf16_geom(f).img +
                           int64_t(f.R) * f.S * (bf16_geom(f).Ce / 2) * round_up(f.K, KB);
      most = most > need ? most : need;
    }
  return most;
}

static void bf16_bwd_phases(float* dx, const float* dy, const float* w, float* ws, const Conv2dParams& p,
                            bool accumulate, int nthreads) {
  const int NV = conv_nv(p.C, 16), KB = NV * 16;
  const int64_t nt = nthreads > 1 ? nthreads : 1;
  for_each_bwd_phase(dx, dy, ws, p, accumulate,
                     [&](float* dx0, const float* src, float* img_ws, const Conv2dParams& f, const BwdPhase& rh,
                         const BwdPhase& rw, const YLayout& yl) {
                       bf16_t* wp = reinterpret_cast<bf16_t*>(img_ws + nt * bf16_geom(f).img);
                       bf16_pack(wp, nullptr, nullptr, f.R, f.S, p.K, p.C, KB, [&](int j, int l, int k, int c) {
                         const int r = rh.first + (rh.taps - 1 - j) * rh.step;
                         const int s = rw.first + (rw.taps - 1 - l) * rw.step;
                         return w[((int64_t(r) * p.S + s) * p.C + c) * p.K + k];
                       });
                       bf16_fwd_packed(dx0, src, wp, nullptr, f, img_ws, NV, accumulate, &yl);
                     });
}

// ---- weight gradient -----------------------------------------------------------------------------
// dw[r][s][c][k] = sum over pixels of x(pixel, tap) * dy(pixel): the reduction is over output
// pixels, so the pairs are pixels (oh, 2q) and (oh, 2q+1) of a row (a zero dy stands in for the
// second one when Q is odd). Per image, a thread builds
//  - D2 [P][Q2][Kp][2]: dy of each pixel pair interleaved per output channel (Kp = K rounded up to
//    the tile width, zero-filled), the vector operand;
//  - X2 [Hp][Q2][M][2]: for each padded input row, the window of both pixels of a pair
//    interleaved, M = ((S-1)*dw + 1) * C elements of the row from the pair's first column: element
//    m = t*C + c is column t of the window, channel c. Tap (r, s), channel c reads row
//    oh*sh + r*dh at m = s*dw*C + c: the broadcast operand.
// and a tile of MC consecutive m x NV vectors of 16 output channels accumulates over every pair of
// the image. Images are split into the fp32 kernel's fixed blocks, partial sums added in block
// order: the same bits on any thread count.

struct Bf16WGeom {
  int Hp, Wp, Q2, M, Kp;
  int64_t img, x2, d2;  // bf16 elements of the converted image, X2 and D2
  int64_t scratch;      // floats of one thread's scratch (all three, 64-byte aligned)
};

static inline Bf16WGeom bf16_wgeom(const Conv2dParams& p) {
  Bf16WGeom g;
  g.Hp = p.H + p.pt + p.pb;
  g.Wp = p.W + p.pl + p.pr;
  g.Q2 = (p.Q + 1) / 2;
  g.M = ((p.S - 1) * p.dw + 1) * p.C;
  g.Kp = int(round_up(p.K, conv_nv(p.K, 16) * 16));
  g.img = int64_t(g.Hp) * g.Wp * p.C;
  g.x2 = int64_t(g.Hp) * g.Q2 * g.M * 2;
  g.d2 = int64_t(p.P) * g.Q2 * g.Kp * 2;
  g.scratch = round_up((g.img + 1) / 2, 16) + round_up(g.x2 / 2, 16) + round_up(g.d2 / 2, 16);
  return g;
}

// 32 bf16: a[0..15] and b[0..15] interleaved (a0 b0 a1 b1 ...); n < 16 takes the first n of each.
static inline void bf16_interleave(bf16_t* dst, const bf16_t* a, const bf16_t* b, int n) {
  static const uint16_t kIdx[32] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23,
                                    8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __mmask16 m = n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1);
  const __m256i va = _mm256_maskz_loadu_epi16(m, a);
  const __m256i vb = b ? _mm256_maskz_loadu_epi16(m, b) : _mm256_setzero_si256();
  const __m512i ab = _mm512_inserti64x4(_mm512_castsi256_si512(va), vb, 1);
  const __m512i out = _mm512_permutexvar_epi16(_mm512_loadu_si512(kIdx), ab);
  const __mmask32 m2 = n >= 16 ? __mmask32(0xffffffffu) : __mmask32((1ull << (2 * n)) - 1);
  _mm512_mask_storeu_epi16(dst, m2, out);
}

// X2 and D2 of image n (see above); img: scratch for the image as bf16 [Hp][Wp][C].
static void bf16_wgrad_prepare(bf16_t* x2, bf16_t* d2, bf16_t* img, const float* x, const float* dy, int n,
                               const Conv2dParams& p, const Bf16WGeom& g, bool borders) {
  Bf16Geom ig;
  ig.Hp = g.Hp; ig.Wp = g.Wp; ig.Ce = p.C; ig.img = 0;
  bf16_image(img, x, n, p, ig, borders);
  const int64_t prow = int64_t(g.Wp) * p.C, pix = int64_t(p.sw) * p.C;
  for (int h = 0; h < g.Hp; ++h) {
    const bf16_t* row = img + h * prow;
    bf16_t* out = x2 + int64_t(h) * g.Q2 * g.M * 2;
    for (int q = 0; q < g.Q2; ++q) {
      const bf16_t* a = row + 2 * q * pix;
      const bf16_t* b = 2 * q + 1 < p.Q ? a + pix : nullptr;
      bf16_t* o = out + int64_t(q) * g.M * 2;
      for (int m = 0; m < g.M; m += 16) bf16_interleave(o + 2 * m, a + m, b ? b + m : nullptr, g.M - m < 16 ? g.M - m : 16);
    }
  }
  // D2 through a converted row pair: dy rows are K floats per pixel.
  const float* dyn = dy + int64_t(n) * p.P * p.Q * p.K;
  bf16_t tmp[2][64];
  for (int oh = 0; oh < p.P; ++oh)
    for (int q = 0; q < g.Q2; ++q) {
      const float* a = dyn + (int64_t(oh) * p.Q + 2 * q) * p.K;
      const bool has_b = 2 * q + 1 < p.Q;
      bf16_t* o = d2 + (int64_t(oh) * g.Q2 + q) * g.Kp * 2;
      for (int k0 = 0; k0 < g.Kp; k0 += 16) {
        const int valid = p.K - k0 < 16 ? (p.K - k0 > 0 ? p.K - k0 : 0) : 16;
        if (valid == 0) {
          __builtin_memset(o + 2 * k0, 0, 64);
          continue;
        }
        bf16_convert(tmp[0], a + k0, valid);
        if (has_b) bf16_convert(tmp[1], a + p.K + k0, valid);
        bf16_interleave(o + 2 * k0, tmp[0], has_b ? tmp[1] : nullptr, valid);
        if (valid < 16) __builtin_memset(o + 2 * (k0 + valid), 0, sizeof(bf16_t) * 2 * (16 - valid));
      }
    }
}

// dw (row stride K) += the tile: MC consecutive window elements x NV vectors of output channels.
template <int MC, int NV>
static inline void bf16_wgrad_tile(float* dw, int K, int kvalid, const bf16_t* x2, int64_t x2_rows, int64_t x2_q,
                                   const bf16_t* d2, int64_t d2_q, int P, int Q2) {
  __m512 acc[MC][NV];
  for (int i = 0; i < MC; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  for (int oh = 0; oh < P; ++oh) {
    const bf16_t* xr = x2 + oh * x2_rows;
    const bf16_t* dr = d2 + int64_t(oh) * Q2 * d2_q;
    for (int q = 0; q < Q2; ++q) {
      __m512bh d[NV];
      for (int v = 0; v < NV; ++v) {
        const __m512i di = _mm512_loadu_si512(dr + q * d2_q + v * 32);
        __builtin_memcpy(&d[v], &di, 64);
      }
      const bf16_t* xq = xr + q * x2_q;
      for (int i = 0; i < MC; ++i) {
        uint32_t pair;
        __builtin_memcpy(&pair, xq + 2 * i, 4);
        const __m512i xi = _mm512_set1_epi32(int(pair));
        __m512bh xb;
        __builtin_memcpy(&xb, &xi, 64);
        for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], xb, d[v]);
      }
    }
  }
  for (int i = 0; i < MC; ++i) {
    float* o = dw + int64_t(i) * K;
    for (int v = 0; v < NV; ++v) {
      const int lanes = kvalid - v * 16;
      if (lanes <= 0) continue;
      const __mmask16 m = lanes >= 16 ? __mmask16(0xffff) : __mmask16((1u << lanes) - 1);
      _mm512_mask_storeu_ps(o + v * 16, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, o + v * 16), acc[i][v]));
    }
  }
}

// One image's contribution to dw (from its X2 and D2).
template <int NV>
static void bf16_wgrad_image(float* dw, const bf16_t* x2, const bf16_t* d2, const Conv2dParams& p,
                             const Bf16WGeom& g) {
  constexpr int MCMAX = NV == 2 ? Tile<16>::MR2 : Tile<16>::MR1;
  const int KB = NV * 16, nkb = (p.K + KB - 1) / KB;
  const int64_t x2_q = int64_t(g.M) * 2, x2_row = int64_t(g.Q2) * x2_q, x2_rows = int64_t(p.sh) * x2_row;
  const int64_t d2_q = int64_t(g.Kp) * 2;
  const bool flat = p.dw == 1;  // the (s, c) pairs of a kernel row are the window's elements in order
  const int SJ = flat ? 1 : p.S, J = flat ? p.S * p.C : p.C;
  for (int r = 0; r < p.R; ++r)
    for (int s = 0; s < SJ; ++s)
      for (int kb = 0; kb < nkb; ++kb) {
        const int k0 = kb * KB, kvalid = p.K - k0;
        float* dwt = dw + (int64_t(r * p.S + s) * p.C) * p.K + k0;
        const bf16_t* xt = x2 + int64_t(r) * p.dh * x2_row + int64_t(s) * p.dw * p.C * 2;
        const bf16_t* dt = d2 + int64_t(k0) * 2;
        int j0 = 0;
        for (; j0 + MCMAX <= J; j0 += MCMAX)
          bf16_wgrad_tile<MCMAX, NV>(dwt + int64_t(j0) * p.K, p.K, kvalid, xt + 2 * j0, x2_rows, x2_q, dt, d2_q, p.P,
                                     g.Q2);
        const int rem = J - j0;
        float* o = dwt + int64_t(j0) * p.K;
        const bf16_t* xo = xt + 2 * j0;
#define CNNBP_TAIL(m) \
  case m:             \
    if constexpr (m < MCMAX) bf16_wgrad_tile<m, NV>(o, p.K, kvalid, xo, x2_rows, x2_q, dt, d2_q, p.P, g.Q2); \
    break;
        switch (rem) {
          CNNBP_TAIL(1) CNNBP_TAIL(2) CNNBP_TAIL(3) CNNBP_TAIL(4) CNNBP_TAIL(5) CNNBP_TAIL(6) CNNBP_TAIL(7)
          CNNBP_TAIL(8) CNNBP_TAIL(9) CNNBP_TAIL(10) CNNBP_TAIL(11) CNNBP_TAIL(12) CNNBP_TAIL(13)
          default: break;
        }
#undef CNNBP_TAIL
      }
}

// Workspace (floats): [one thread's scratch per thread][conv_dw_blocks - 1 partial dw]
static int64_t bf16_wgrad_ws(const Conv2dParams& p, int nthreads) {
  const int64_t nt = nthreads > 1 ? nthreads : 1;
  return nt * bf16_wgeom(p).scratch + int64_t(conv_dw_blocks(p) - 1) * int64_t(p.R) * p.S * p.C * p.K;
}

// dw only (the caller sums the bias gradient in fp32).
static void bf16_wgrad(float* dw, const float* dy, const float* x, float* ws, const Conv2dParams& p) {
  const Bf16WGeom g = bf16_wgeom(p);
  const int nt = get_num_threads() > 1 ? get_num_threads() : 1;
  float* partials = ws + int64_t(nt) * g.scratch;
  const int64_t nw = int64_t(p.R) * p.S * p.C * p.K;
  const int nb = conv_dw_blocks(p);
  const int64_t per_block = int64_t(p.P) * p.Q * p.R * p.S * p.C * p.K * ((int64_t(p.N) + nb - 1) / nb);
  const int NV = conv_nv(p.K, 16);
  parallel_for(nb, grain(per_block), [&](int64_t b0, int64_t b1, int tid) {
    float* mine = ws + tid * g.scratch;
    bf16_t* img = reinterpret_cast<bf16_t*>(mine);
    bf16_t* x2 = reinterpret_cast<bf16_t*>(mine + round_up((g.img + 1) / 2, 16));
    bf16_t* d2 = reinterpret_cast<bf16_t*>(mine + round_up((g.img + 1) / 2, 16) + round_up(g.x2 / 2, 16));
    bool first = true;
    for (int64_t b = b0; b < b1; ++b) {
      float* aw = b == 0 ? dw : partials + (b - 1) * nw;
      for (int64_t i = 0; i < nw; ++i) aw[i] = 0.0f;
      const int n0 = int(block_begin(p.N, nb, b)), n1 = int(block_begin(p.N, nb, b + 1));
      for (int n = n0; n < n1; ++n) {
        bf16_wgrad_prepare(x2, d2, img, x, dy, n, p, g, first);
        first = false;
        if (NV == 2) bf16_wgrad_image<2>(aw, x2, d2, p, g);
        else bf16_wgrad_image<1>(aw, x2, d2, p, g);
      }
    }
  });
  add_block_partials(dw, static_cast<float*>(nullptr), partials, nw, 0, nb);
}
