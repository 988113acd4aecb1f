// conv2d in bfloat16 with fp32 accumulation: AVX512_BF16's vdpbf16ps (16 lanes, each adding the
// products of a pair of bf16 values to an fp32 accumulator). Included by bf16_isa.cpp only.
//
// The layout is conv2d.inl's with the reduction over input channels taken in pairs: each image is
// converted (and zero-padded) into a thread's scratch as bf16 [Hp][Wp][Ce] with Ce = C rounded up
// to even (a zero channel for odd C), and the weights are packed to [K/KB][R][S][Ce/2][KB][2]: the
// 32-bit word at pair j of lane k holds w[.., 2j, k] and w[.., 2j+1, k]. A tile of MR output pixels
// x NV vectors of 16 output channels broadcasts one pair of input channels per pixel and issues
// MR*NV vdpbf16ps: 32 multiply-adds per instruction instead of vfmadd's 16.

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

// Packs w [R,S,C,K] into bf16 pairs [K/KB][R][S][Ce/2][KB][2] (zero-filled tails), and b into
// bp [K/KB * KB] floats. rotate: w'[r][s][k][c] = w[R-1-r][S-1-s][c][k] with C and K swapped (the
// data gradient as a forward problem).
static void bf16_pack_weights(bf16_t* wp, float* bp, const float* w, const float* b, int R, int S, int C, int K,
                              int KB, bool rotate) {
  const int Cp = rotate ? K : C, Kp = rotate ? C : K, CP = (Cp + 1) / 2;
  const int nkb = (Kp + KB - 1) / KB;
  for (int kb = 0; kb < nkb; ++kb)
    for (int r = 0; r < R; ++r)
      for (int s = 0; s < S; ++s)
        for (int j = 0; j < CP; ++j) {
          bf16_t* dst = wp + ((((int64_t(kb) * R + r) * S + s) * CP + j) * KB) * 2;
          for (int t = 0; t < KB; ++t) {
            const int k = kb * KB + t;
            for (int e = 0; e < 2; ++e) {
              const int c = 2 * j + e;
              float v = 0.0f;
              if (k < Kp && c < Cp)
                v = rotate ? w[((int64_t(R - 1 - r) * S + (S - 1 - s)) * C + k) * K + c]
                           : w[((int64_t(r) * S + s) * C + c) * K + k];
              dst[2 * t + e] = bf16_bits(v);
            }
          }
        }
  if (bp)
    for (int j = 0; j < nkb * KB; ++j) bp[j] = (b && j < Kp) ? b[j] : 0.0f;
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
                            float* img_ws, int NV, bool accumulate) {
  const Bf16Geom g = bf16_geom(p);
  const int KB = NV * 16, nkb = (p.K + KB - 1) / KB, CP = g.Ce / 2;
  const int64_t x_row = int64_t(g.Wp) * g.Ce, xs_stride = int64_t(p.sw) * g.Ce, dw_Ce = int64_t(p.dw) * g.Ce;
  const int64_t y_img = int64_t(p.P) * p.Q * p.K, y_row = int64_t(p.Q) * p.K;
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
        float* yrow = y + int64_t(n) * y_img + int64_t(oh) * y_row + int64_t(kb) * KB;
        const bf16_t* xrow = mine + int64_t(oh) * p.sh * x_row;
        if (NV == 2)
          bf16_fwd_row<2, Tile<16>::MR2>(yrow, p.K, kvalid, xrow, xs_stride, x_row, wkb, bkb, CP, p.R, p.S, p.dh,
                                         dw_Ce, p.Q, p.relu != 0, accumulate);
        else
          bf16_fwd_row<1, Tile<16>::MR1>(yrow, p.K, kvalid, xrow, xs_stride, x_row, wkb, bkb, CP, p.R, p.S, p.dh,
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
