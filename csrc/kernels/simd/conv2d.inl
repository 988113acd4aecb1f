// conv2d, register-blocked direct convolution on NHWC (float; AVX2 / AVX-512 tables).
//
// Forward: a tile of MR consecutive output pixels x KB = NV*VL output channels stays in
// registers for the whole reduction over (r, s, c): per input channel, NV weight vectors are
// loaded and MR input values broadcast. The input is physically zero-padded into the workspace
// when the layer pads, so the inner loops have no bounds checks; weights are repacked to
// [K/KB][R][S][C][KB] (zero-filled K tail). Parallel over (image, K block).
// Backward-data (stride 1) is the forward kernel on dy with the weights rotated 180 degrees and
// C, K swapped; with strides, one such forward problem per phase (dx position modulo the stride)
// over the taps that reach it (see bwd_phase). Either can add into dx (accumulate).
// Backward-weight: per tap (r, s), a tile of MC input channels x KB output channels accumulates
// over every pixel of one image at a time (the image stays in L2); images are split into fixed
// blocks (conv_dw_blocks), one partial sum per block, added in block order: the same bits on any
// thread count.

struct ConvGeom {
  int Hp, Wp;        // padded input size
  bool padded;       // each image is copied into a thread's scratch with zero borders first
  int64_t img_pad;   // floats of one padded image (0 when not padded)
};

static inline ConvGeom conv_geom(const Conv2dParams& p) {
  ConvGeom g;
  g.Hp = p.H + p.pt + p.pb;
  g.Wp = p.W + p.pl + p.pr;
  g.padded = p.pt || p.pb || p.pl || p.pr;
  g.img_pad = g.padded ? int64_t(g.Hp) * g.Wp * p.C : 0;
  return g;
}

// Scratch for the padded images: one per thread (each pads the images it works on, which then
// stay in its cache for the convolution that reads them).
static inline int64_t pad_scratch(const ConvGeom& g, int nthreads) { return g.img_pad * (nthreads > 1 ? nthreads : 1); }

static inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// Short copies inline (a library memcpy call per image row costs more than the row).
template <int VL>
static inline void copy_floats(float* dst, const float* src, int64_t n) {
  int64_t i = 0;
  for (; i + VL <= n; i += VL) vstore<VL>(dst + i, vload<VL>(src + i));
  for (; i < n; ++i) dst[i] = src[i];
}

// Copies image n of x [N,H,W,C] into xp [Hp,Wp,C]; borders: also write the zero borders (the
// first image a thread pads in a call; later ones leave them as they are).
template <int VL>
static void pad_image(float* xp, const float* x, int n, const Conv2dParams& p, const ConvGeom& g, bool borders) {
  const int64_t row = int64_t(p.W) * p.C, prow = int64_t(g.Wp) * p.C, left = int64_t(p.pl) * p.C;
  for (int r = 0; r < g.Hp; ++r) {
    const int h = r - p.pt;
    float* dst = xp + r * prow;
    if (h < 0 || h >= p.H) {
      if (borders)
        for (int64_t i = 0; i < prow; ++i) dst[i] = 0.0f;
      continue;
    }
    if (borders) {
      for (int64_t i = 0; i < left; ++i) dst[i] = 0.0f;
      for (int64_t i = left + row; i < prow; ++i) dst[i] = 0.0f;
    }
    copy_floats<VL>(dst + left, x + (int64_t(n) * p.H + h) * row, row);
  }
}

// Image n of x as the convolution reads it: in place, or padded into this thread's scratch
// (padded again only when the thread moves to another image; *mine_n starts at -1).
template <int VL>
static inline const float* image_for(const float* x, int n, float* mine, int* mine_n, const Conv2dParams& p,
                                     const ConvGeom& g) {
  if (!g.padded) return x + int64_t(n) * p.H * p.W * p.C;
  if (*mine_n != n) {
    pad_image<VL>(mine, x, n, p, g, *mine_n < 0);
    *mine_n = n;
  }
  return mine;
}

// One output tile: MR pixels (input pixel stride xs_stride floats) x NV vectors.
// FR, FJ > 0: the kernel has FR rows of FJ = S*C contiguous (s, c) pairs known at compile time
// (first layers: 3x3x3, 5x5x1), so the short reduction loops unroll completely; their loop-exit
// branches would otherwise mispredict a few times per tile of only 27 or 25 steps. Only full
// tiles get these variants (row tails take the generic loop: unrolling every tail width would
// multiply the kernels' compile time by ten).
template <int VL, int MR, int NV, int FR = 0, int FJ = 0>
static inline void conv_fwd_tile(float* y, int ldy, int kvalid, const float* xs, int64_t xs_stride,
                                 int64_t x_row, const float* wp, const float* bias, int C, int R, int S,
                                 int dh_row_mul, int64_t dw_C, bool relu, bool accumulate) {
  typedef Vec<VL> V;
  constexpr int KB = NV * VL;
  V acc[MR][NV];
  for (int v = 0; v < NV; ++v) {
    const V b = bias ? vload<VL>(bias + v * VL) : vzero<VL>();
    for (int i = 0; i < MR; ++i) acc[i][v] = b;
  }
  if constexpr (FR > 0) {
    (void)C; (void)R; (void)S; (void)dw_C;
    for (int r = 0; r < FR; ++r) {
      const float* xq = xs + int64_t(r) * dh_row_mul * x_row;
      const float* wq = wp + int64_t(r) * FJ * KB;
      for (int c = 0; c < FJ; ++c) {
        V w[NV];
        for (int v = 0; v < NV; ++v) w[v] = vload<VL>(wq + c * KB + v * VL);
        for (int i = 0; i < MR; ++i) {
          const V xb = vbroadcast<VL>(xq[i * xs_stride + c]);
          for (int v = 0; v < NV; ++v) acc[i][v] += xb * w[v];
        }
      }
    }
  } else {
    // With dilation 1 along the width, the (s, c) pairs of a kernel row are contiguous both in the
    // input row and in the packed weights: one reduction loop of length S*C instead of S loops of C.
    const bool flat = dw_C == C;
    const int SJ = flat ? 1 : S, J = flat ? S * C : C;
    for (int r = 0; r < R; ++r) {
      const float* xr = xs + int64_t(r) * dh_row_mul * x_row;
      for (int s = 0; s < SJ; ++s) {
        const float* xq = xr + s * dw_C;
        const float* wq = wp + int64_t(r * S + s) * C * KB;
        for (int c = 0; c < J; ++c) {
          V w[NV];
          for (int v = 0; v < NV; ++v) w[v] = vload<VL>(wq + c * KB + v * VL);
          for (int i = 0; i < MR; ++i) {
            const V xb = vbroadcast<VL>(xq[i * xs_stride + c]);
            for (int v = 0; v < NV; ++v) acc[i][v] += xb * w[v];
          }
        }
      }
    }
  }
  if (relu) {  // acc < 0 is false for NaN, so NaN propagates
    const V zero = vzero<VL>();
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) acc[i][v] = acc[i][v] < zero ? zero : acc[i][v];
  }
  if (accumulate) {  // (a separate loop: the plain store below stays as tight as without the option)
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) {
        float* yo = y + int64_t(i) * ldy + v * VL;
        const int lanes = kvalid - v * VL;
        if (lanes >= VL) acc[i][v] += vload<VL>(yo);
        else if (lanes > 0) acc[i][v] += vload_partial<VL>(yo, lanes);
      }
  }
  for (int i = 0; i < MR; ++i) {
    float* yo = y + int64_t(i) * ldy;
    for (int v = 0; v < NV; ++v) {
      const int lanes = kvalid - v * VL;
      if (lanes >= VL) vstore<VL>(yo + v * VL, acc[i][v]);
      else if (lanes > 0) vstore_partial<VL>(yo + v * VL, acc[i][v], lanes);
    }
  }
}

template <int VL, int NV, int MR, int FR = 0, int FJ = 0>
static inline void conv_fwd_row(float* y, int ldy, int kvalid, const float* xs, int64_t xs_stride, int64_t x_row,
                                const float* wp, const float* bias, int C, int R, int S, int dh, int64_t dw_C, int Q,
                                bool relu, bool accumulate) {
  int ow = 0;
  for (; ow + MR <= Q; ow += MR)
    conv_fwd_tile<VL, MR, NV, FR, FJ>(y + int64_t(ow) * ldy, ldy, kvalid, xs + ow * xs_stride, xs_stride, x_row, wp,
                                      bias, C, R, S, dh, dw_C, relu, accumulate);
  const int rem = Q - ow;
  if (rem <= 0) return;
  float* yo = y + int64_t(ow) * ldy;
  const float* xo = xs + ow * xs_stride;
#define CNNBP_TAIL(m)                                                                                             \
  case m:                                                                                                         \
    if constexpr (m < MR)                                                                                         \
      conv_fwd_tile<VL, m, NV>(yo, ldy, kvalid, xo, xs_stride, x_row, wp, bias, C, R, S, dh, dw_C, relu,          \
                               accumulate);                                                                       \
    break;
  switch (rem) {
    CNNBP_TAIL(1) CNNBP_TAIL(2) CNNBP_TAIL(3) CNNBP_TAIL(4) CNNBP_TAIL(5) CNNBP_TAIL(6) CNNBP_TAIL(7)
    CNNBP_TAIL(8) CNNBP_TAIL(9) CNNBP_TAIL(10) CNNBP_TAIL(11) CNNBP_TAIL(12) CNNBP_TAIL(13)
    default: break;
  }
#undef CNNBP_TAIL
}

// Packs w [R,S,C,K] into wp [K/KB][R][S][C][KB] and b into bp [K/KB][KB], zero-filled tails.
// rotate: use w'[r][s][k][c] = w[R-1-r][S-1-s][c][k] instead (backward-data), with C and K swapped.
static void pack_conv_weights(float* wp, float* bp, const float* w, const float* b, int R, int S, int C, int K, int KB,
                              bool rotate) {
  // For rotate, the packed "C" is the original K and the packed "K" the original C.
  const int Cp = rotate ? K : C, Kp = rotate ? C : K;
  const int nkb = int((Kp + KB - 1) / KB);
  for (int kb = 0; kb < nkb; ++kb)
    for (int r = 0; r < R; ++r)
      for (int s = 0; s < S; ++s)
        for (int c = 0; c < Cp; ++c) {
          float* dst = wp + (((int64_t(kb) * R + r) * S + s) * Cp + c) * KB;
          for (int j = 0; j < KB; ++j) {
            const int k = kb * KB + j;
            float v = 0.0f;
            if (k < Kp) {
              v = rotate ? w[((int64_t(R - 1 - r) * S + (S - 1 - s)) * C + k) * K + c]
                         : w[((int64_t(r) * S + s) * C + c) * K + k];
            }
            dst[j] = v;
          }
        }
  if (bp)
    for (int j = 0; j < nkb * KB; ++j) bp[j] = (b && j < Kp) ? b[j] : 0.0f;
}

// Where the forward driver stores output pixel (n, oh, ow): y + n*img + oh*row + ow*pix (channels
// contiguous). Default: the dense [N,P,Q,K] tensor.
struct YLayout {
  int64_t img, row;
  int pix;
};
static inline YLayout dense_layout(const Conv2dParams& p) {
  return {int64_t(p.P) * p.Q * p.K, int64_t(p.Q) * p.K, p.K};
}

// Forward driver over already packed weights; pad_ws: pad_scratch(g, threads) floats.
// accumulate: add into y instead of overwriting it.
template <int VL>
static void conv_fwd_packed(float* y, const float* x, const float* wp, const float* bp, const Conv2dParams& p,
                            float* pad_ws, int NV, bool accumulate = false, const YLayout* layout = nullptr) {
  const YLayout yl = layout ? *layout : dense_layout(p);
  const ConvGeom g = conv_geom(p);
  const int KB = NV * VL, nkb = int((p.K + KB - 1) / KB);
  const int64_t x_row = int64_t(g.Wp) * p.C;
  const int64_t xs_stride = int64_t(p.sw) * p.C, dw_C = int64_t(p.dw) * p.C;
  const int64_t items = int64_t(p.N) * nkb;
  // First-layer kernels with a fixed, short reduction get fully unrolled tiles (see conv_fwd_tile).
  const bool flat = dw_C == p.C;
  const int first = !flat ? 0 : (p.R == 3 && p.S * p.C == 9) ? 1 : (p.R == 5 && p.S * p.C == 25) ? 2 : 0;
  parallel_for(items, grain(int64_t(p.P) * p.Q * p.R * p.S * p.C * KB), [&](int64_t i0, int64_t i1, int tid) {
    float* mine = pad_ws + tid * g.img_pad;
    int mine_n = -1;
    for (int64_t it = i0; it < i1; ++it) {
      const int n = int(it / nkb), kb = int(it % nkb);
      const float* ximg = image_for<VL>(x, n, mine, &mine_n, p, g);
      const int kvalid = p.K - kb * KB;
      const float* wkb = wp + int64_t(kb) * p.R * p.S * p.C * KB;
      const float* bkb = bp ? bp + int64_t(kb) * KB : nullptr;
      for (int oh = 0; oh < p.P; ++oh) {
        float* yrow = y + int64_t(n) * yl.img + int64_t(oh) * yl.row + int64_t(kb) * KB;
        const float* xrow = ximg + int64_t(oh) * p.sh * x_row;
#define CNNBP_ROW(nv, mr, fr, fj)                                                                              \
  conv_fwd_row<VL, nv, mr, fr, fj>(yrow, yl.pix, kvalid, xrow, xs_stride, x_row, wkb, bkb, p.C, p.R, p.S, p.dh,    \
                                   dw_C, p.Q, p.relu != 0, accumulate)
        if (NV == 2) {
          if (first == 1) CNNBP_ROW(2, Tile<VL>::MR2, 3, 9);
          else if (first == 2) CNNBP_ROW(2, Tile<VL>::MR2, 5, 25);
          else CNNBP_ROW(2, Tile<VL>::MR2, 0, 0);
        } else {
          if (first == 1) CNNBP_ROW(1, Tile<VL>::MR1, 3, 9);
          else if (first == 2) CNNBP_ROW(1, Tile<VL>::MR1, 5, 25);
          else CNNBP_ROW(1, Tile<VL>::MR1, 0, 0);
        }
#undef CNNBP_ROW
      }
    }
  });
}

static inline int conv_nv(int K, int VL) { return K <= VL ? 1 : 2; }

// The blocked kernels materialise each padded image (and phase-padded copies of dy); a padding
// far larger than the data itself (a dilation of millions with 'same' padding on a 4x4 image is
// valid) would make that scratch gigabytes of zeros and the kernels seconds of work. Such problems
// go to the portable kernels, which skip padded taps without storing them. So does an empty batch
// (nothing to compute; the weight gradient is zero).
static inline bool portable_is_better(const Conv2dParams& p) {
  const int64_t padded = (int64_t(p.H) + p.pt + p.pb) * (int64_t(p.W) + p.pl + p.pr);
  return p.N == 0 || padded > 16 * (int64_t(p.H) * p.W + int64_t(p.P) * p.Q) + 65536;
}

// Workspace layout (floats): [padded images, one per thread][packed weights][packed bias]
template <int VL>
static int64_t conv_fwd_ws(const Conv2dParams& p, int nthreads) {
  const int KB = conv_nv(p.K, VL) * VL;
  return pad_scratch(conv_geom(p), nthreads) + int64_t(p.R) * p.S * p.C * round_up(p.K, KB) + round_up(p.K, KB);
}

// At most 8 filters: the forward and weight-gradient tiles of the 16-wide path use 8-wide vectors
// (LeNet's 6 filters fill 6 of 8 lanes instead of 6 of 16; two 256-bit FMAs issue where one 512-bit
// one does on Zen 4, as many lanes per instruction on cores with two 512-bit units). The same
// sums in the same order: the bits do not change. Both need no more workspace than at 16.
static inline bool narrow_k(int K) { return K <= 8; }

// x: [N,H,W,C]  w: [R,S,C,K]  b: [K] or null  y: [N,P,Q,K]
template <int VL>
static void conv2d_forward_blocked(float* y, const float* x, const float* w, const float* b, float* ws,
                                   const Conv2dParams& p) {
  if (portable_is_better(p)) return conv2d_forward<float>(y, x, w, b, ws, p);
  if constexpr (VL == 16) {
    if (narrow_k(p.K)) return conv2d_forward_blocked<8>(y, x, w, b, ws, p);
  }
  const int NV = conv_nv(p.K, VL), KB = NV * VL;
  float* wp = ws + pad_scratch(conv_geom(p), get_num_threads());
  float* bp = wp + int64_t(p.R) * p.S * p.C * round_up(p.K, KB);
  pack_conv_weights(wp, bp, w, b, p.R, p.S, p.C, p.K, KB, false);
  conv_fwd_packed<VL>(y, x, wp, bp, p, ws, NV);
}

// The forward problem that computes dx for stride 1: input dy [N,P,Q,K], "filters" C, padding
// (R-1)*dh - pt before and (R-1)*dh - pb after; false when that padding would be negative.
static inline bool bwd_data_as_forward(const Conv2dParams& p, Conv2dParams* q) {
  if (p.sh != 1 || p.sw != 1) return false;
  const int et = (p.R - 1) * p.dh, el = (p.S - 1) * p.dw;
  Conv2dParams r = p;
  r.H = p.P; r.W = p.Q; r.C = p.K; r.K = p.C;
  r.pt = et - p.pt; r.pb = et - p.pb; r.pl = el - p.pl; r.pr = el - p.pr;
  if (r.pt < 0 || r.pb < 0 || r.pl < 0 || r.pr < 0) return false;
  r.P = p.H; r.Q = p.W;
  // The forward geometry must land exactly on the input size.
  if (r.H + r.pt + r.pb - et != p.H || r.W + r.pl + r.pr - el != p.W) return false;
  *q = r;
  return true;
}

// Strided backward-data by phases. Along one axis (stride st, dilation d, padding before pb, kernel
// taps R, dy length P), the input positions h = a + i*st of phase a (0 <= a < st) receive dy[p]*w[r]
// exactly for the taps r with (a + pb - r*d) divisible by st, at p = i + (a + pb - r*d)/st. Those
// taps are evenly spaced, so each phase is a stride-1 forward convolution over dy (dilation d/g,
// g = gcd(d, st)) with the taps reversed, reading dy shifted by the last tap's offset (a padding
// before, or a crop when negative), and writing every st-th position of dx.
struct BwdPhase {
  int n = 0;           // positions of dx in this phase
  int taps = 0;        // kernel taps reaching them (0: dx is 0 there)
  int first = 0;       // the first tap r; the others are first + k*step
  int step = 1;
  int dil = 1;         // dilation of the phase's convolution over dy
  int before = 0;      // dy positions before the first one read (negative: skipped)
  int after = 0;       // after the last one
};

static inline int gcd_int(int a, int b) {
  while (b) { const int t = a % b; a = b; b = t; }
  return a;
}

static BwdPhase bwd_phase(int a, int len, int P, int R, int st, int d, int pad_before) {
  BwdPhase ph;
  ph.n = a < len ? (len - a + st - 1) / st : 0;
  int first = -1;
  for (int r = 0; r < R; ++r)
    if (((a + pad_before - r * d) % st + st) % st == 0) { first = r; break; }
  if (ph.n == 0 || first < 0) return ph;
  const int g = gcd_int(d, st);
  ph.first = first;
  ph.step = st / g;
  ph.taps = (R - 1 - first) / ph.step + 1;
  ph.dil = d / g;
  const int last = first + (ph.taps - 1) * ph.step;
  const int off_last = (a + pad_before - last * d) / st;  // exact: the dy offset of the last tap
  ph.before = -off_last;
  // The phase's convolution reads dy positions off_last .. off_last + (n-1) + (taps-1)*dil.
  ph.after = off_last + (ph.n - 1) + (ph.taps - 1) * ph.dil - (P - 1);
  return ph;
}

// Copies dy [N,P,Q,K] into [N, P+bt+at, Q+bl+al, K]: zero rows/columns where a margin is positive,
// dropped ones where it is negative.
static void pad_or_crop(float* out, const float* dy, int N, int P, int Q, int K, int bt, int at, int bl, int al) {
  const int Hp = P + bt + at, Wp = Q + bl + al;
  const int64_t prow = int64_t(Wp) * K;
  parallel_for(int64_t(N) * Hp, grain(prow), [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / Hp;
      const int h = int(r % Hp) - bt;
      float* dst = out + r * prow;
      if (h < 0 || h >= P) {
        for (int64_t i = 0; i < prow; ++i) dst[i] = 0.0f;
        continue;
      }
      const float* src = dy + (n * P + h) * int64_t(Q) * K;
      for (int w = 0; w < Wp; ++w) {
        const int q = w - bl;
        float* o = dst + int64_t(w) * K;
        if (q < 0 || q >= Q) {
          for (int k = 0; k < K; ++k) o[k] = 0.0f;
        } else {
          const float* i = src + int64_t(q) * K;
          for (int k = 0; k < K; ++k) o[k] = i[k];
        }
      }
    }
  });
}

// Packs the phase's sub-kernel: wp [C/KB][th][tw][K][KB] with entry (j, l, k, c) =
// w[rh.first + (th-1-j)*rh.step][rw.first + (tw-1-l)*rw.step][c][k] (taps reversed, C and K swapped).
static void pack_phase_weights(float* wp, const float* w, const Conv2dParams& p, const BwdPhase& rh,
                               const BwdPhase& rw, int KB) {
  const int nkb = (p.C + KB - 1) / KB;
  for (int kb = 0; kb < nkb; ++kb)
    for (int j = 0; j < rh.taps; ++j)
      for (int l = 0; l < rw.taps; ++l) {
        const int r = rh.first + (rh.taps - 1 - j) * rh.step, s = rw.first + (rw.taps - 1 - l) * rw.step;
        for (int k = 0; k < p.K; ++k) {
          float* dst = wp + (((int64_t(kb) * rh.taps + j) * rw.taps + l) * p.K + k) * KB;
          for (int t = 0; t < KB; ++t) {
            const int c = kb * KB + t;
            dst[t] = c < p.C ? w[((int64_t(r) * p.S + s) * p.C + c) * p.K + k] : 0.0f;
          }
        }
      }
}

// The phase's forward problem over a dy copy of (P + before + after) x (Q + ...) without padding.
static Conv2dParams phase_problem(const Conv2dParams& p, const BwdPhase& rh, const BwdPhase& rw) {
  Conv2dParams q = p;
  q.H = p.P + rh.before + rh.after; q.W = p.Q + rw.before + rw.after;
  q.C = p.K; q.K = p.C;
  q.R = rh.taps; q.S = rw.taps;
  q.sh = q.sw = 1;
  q.dh = rh.dil; q.dw = rw.dil;
  q.pt = q.pb = q.pl = q.pr = 0;
  q.P = rh.n; q.Q = rw.n;
  q.relu = 0;
  return q;
}

// The strided data gradient's loop over phases (a, b): a phase no tap reaches gets zeros (nothing
// when accumulating); otherwise dy is padded or cropped into ws when the phase needs it, and
// run(dx0, src, rest, f, rh, rw, yl) computes the phase: forward problem f over src, outputs at
// dx0 in layout yl, rest = the workspace after the dy copy.
template <typename Run>
static void for_each_bwd_phase(float* dx, const float* dy, float* ws, const Conv2dParams& p, bool accumulate,
                               Run run) {
  for (int a = 0; a < p.sh; ++a)
    for (int b = 0; b < p.sw; ++b) {
      const BwdPhase rh = bwd_phase(a, p.H, p.P, p.R, p.sh, p.dh, p.pt);
      const BwdPhase rw = bwd_phase(b, p.W, p.Q, p.S, p.sw, p.dw, p.pl);
      if (rh.n == 0 || rw.n == 0) continue;
      // dx positions of this phase: image n, row a + i*sh, column b + j*sw.
      const YLayout yl{int64_t(p.H) * p.W * p.C, int64_t(p.sh) * p.W * p.C, p.sw * p.C};
      float* dx0 = dx + (int64_t(a) * p.W + b) * p.C;
      if (rh.taps == 0 || rw.taps == 0) {  // no tap reaches this phase: its gradient is 0
        if (accumulate) continue;
        parallel_for(int64_t(p.N) * rh.n, grain(int64_t(rw.n) * p.C), [&](int64_t r0, int64_t r1, int) {
          for (int64_t r = r0; r < r1; ++r) {
            float* row = dx0 + (r / rh.n) * yl.img + (r % rh.n) * yl.row;
            for (int j = 0; j < rw.n; ++j)
              for (int c = 0; c < p.C; ++c) row[int64_t(j) * yl.pix + c] = 0.0f;
          }
        });
        continue;
      }
      const Conv2dParams f = phase_problem(p, rh, rw);
      const float* src = dy;
      float* rest = ws;
      if (rh.before || rh.after || rw.before || rw.after) {
        pad_or_crop(ws, dy, p.N, p.P, p.Q, p.K, rh.before, rh.after, rw.before, rw.after);
        src = ws;
        rest = ws + round_up(int64_t(p.N) * f.H * f.W * f.C, 16);
      }
      run(dx0, src, rest, f, rh, rw, yl);
    }
}

// Phases pay for the usual strides; past 16 of them (strides of 5 and more, or a stride larger
// than the image) the portable gather kernel does the work without a loop over phases.
static inline bool bwd_by_phases(const Conv2dParams& p) { return int64_t(p.sh) * p.sw <= 16; }

// Backward-data by columns, for layers with fewer input channels than a vector holds (LeNet's
// second convolution: 6). The kernels below vectorise over C, so C = 6 fills 6 of 16 lanes, and at
// stride 1 they also multiply the zero border of the padded dy. Here, per image,
// cols[P*Q][RSCp] = dy[P*Q][K] x Wt[K][RSCp], Wt[k][(r,s,c)] = w[r][s][c][k] (the forward tile with a
// 1x1 kernel over K: full vectors along (r, s, c)), then each dx pixel sums its column pieces in a
// fixed order of taps (r, s). One image per thread: the same bits on any thread count.
struct BwdCols {
  int NV, KB, nkb;
  int64_t rsc, ld, cols;  // R*S*C; columns' row length (rsc rounded up to KB); floats per image
};
template <int VL>
static inline BwdCols bwd_cols(const Conv2dParams& p) {
  BwdCols b;
  b.rsc = int64_t(p.R) * p.S * p.C;
  b.NV = b.rsc > VL ? 2 : 1;
  b.KB = b.NV * VL;
  b.ld = round_up(b.rsc, b.KB);
  b.nkb = int(b.ld / b.KB);
  b.cols = round_up(int64_t(p.P) * p.Q * b.ld + VL, 16);  // + VL: the last piece's vector load
  return b;
}

// Lane-operations of each form: the forward-as-backward kernels compute every dx pixel's R*S taps
// (per stride phase) over C rounded up to their block; columns cost the GEMM plus the gather. Taken
// when under half, with C narrower than a vector and an image's columns within 1 Mi floats.
template <int VL>
static inline bool bwd_data_by_cols(const Conv2dParams& p) {
  if (p.C >= VL) return false;
  const BwdCols b = bwd_cols<VL>(p);
  if (b.cols > (int64_t(1) << 20)) return false;
  const double taps = double(p.H) * p.W * p.R * p.S / (double(p.sh) * p.sw);
  const double direct = taps * double(conv_nv(p.C, VL) * VL) * p.K;
  const double cols = double(p.P) * p.Q * double(b.ld) * p.K + taps * VL;
  return 2.0 * cols < direct;
}

// Which column pieces reach each dx row (r, oh) and column (s, ow), as offsets into an image's
// columns: taps[ih*(R+1)] = count, then the offsets (oh*Q*ld + r*S*C); then per column
// taps[H*(R+1) + iw*(S+1)] = count, then (ow*ld + s*C). Built once per call (no division per tap).
static inline int64_t bwd_cols_taps(const Conv2dParams& p) { return int64_t(p.H) * (p.R + 1) + int64_t(p.W) * (p.S + 1); }

static void bwd_cols_tap_table(int64_t* t, int len, int pad, int R, int st, int d, int P, int64_t out_step,
                               int64_t tap_step) {
  for (int i = 0; i < len; ++i, t += R + 1) {
    int cnt = 0;
    for (int r = 0; r < R; ++r) {
      const int o = i + pad - r * d;
      if (o < 0 || o % st || o / st >= P) continue;
      t[1 + cnt++] = int64_t(o / st) * out_step + r * tap_step;
    }
    t[0] = cnt;
  }
}

template <int VL>
static int64_t bwd_cols_ws(const Conv2dParams& p, int nthreads) {
  const BwdCols b = bwd_cols<VL>(p);
  return b.ld * p.K + 2 * bwd_cols_taps(p) + int64_t(nthreads > 1 ? nthreads : 1) * b.cols;
}

// dy: [N,P,Q,K]  w: [R,S,C,K]  dx: [N,H,W,C]; accumulate: dx += the gradient.
template <int VL>
static void conv_bwd_data_cols(float* dx, const float* dy, const float* w, float* ws, const Conv2dParams& p,
                               bool accumulate) {
  typedef Vec<VL> V;
  const BwdCols b = bwd_cols<VL>(p);
  const int K = p.K, C = p.C;
  float* wp = ws;  // [nkb][K][KB]
  for (int kb = 0; kb < b.nkb; ++kb)
    for (int k = 0; k < K; ++k)
      for (int j = 0; j < b.KB; ++j) {
        const int64_t col = int64_t(kb) * b.KB + j;
        wp[(int64_t(kb) * K + k) * b.KB + j] = col < b.rsc ? w[col * K + k] : 0.0f;
      }
  int64_t* rows = reinterpret_cast<int64_t*>(ws + b.ld * K);  // (b.ld is even: 8-byte aligned)
  int64_t* colt = rows + int64_t(p.H) * (p.R + 1);
  bwd_cols_tap_table(rows, p.H, p.pt, p.R, p.sh, p.dh, p.P, int64_t(p.Q) * b.ld, int64_t(p.S) * C);
  bwd_cols_tap_table(colt, p.W, p.pl, p.S, p.sw, p.dw, p.Q, b.ld, C);
  float* scratch = ws + b.ld * K + 2 * bwd_cols_taps(p);
  const int npix = p.P * p.Q;
  const int64_t img_dx = int64_t(p.H) * p.W * C;
  parallel_for(p.N, grain(int64_t(npix) * b.ld * K), [&](int64_t n0, int64_t n1, int tid) {
    float* cols = scratch + tid * b.cols;
    for (int64_t n = n0; n < n1; ++n) {
      const float* dyn = dy + n * int64_t(npix) * K;
      for (int kb = 0; kb < b.nkb; ++kb) {
        const float* wk = wp + int64_t(kb) * K * b.KB;
        if (b.NV == 2)
          conv_fwd_row<VL, 2, Tile<VL>::MR2>(cols + kb * b.KB, int(b.ld), b.KB, dyn, K, 0, wk, nullptr, K, 1, 1, 0, K,
                                             npix, false, false);
        else
          conv_fwd_row<VL, 1, Tile<VL>::MR1>(cols + kb * b.KB, int(b.ld), b.KB, dyn, K, 0, wk, nullptr, K, 1, 1, 0, K,
                                             npix, false, false);
      }
      float* dxn = dx + n * img_dx;
      for (int ih = 0; ih < p.H; ++ih) {
        const int64_t* rt = rows + int64_t(ih) * (p.R + 1);
        for (int iw = 0; iw < p.W; ++iw) {
          const int64_t* ct = colt + int64_t(iw) * (p.S + 1);
          V acc = vzero<VL>();
          for (int i = 1; i <= rt[0]; ++i) {
            const float* cr = cols + rt[i];
            for (int j = 1; j <= ct[0]; ++j) acc += vload<VL>(cr + ct[j]);
          }
          float* o = dxn + (int64_t(ih) * p.W + iw) * C;
          if (accumulate) {
            vstore_partial<VL>(o, vload_partial<VL>(o, C) + acc, C);
          } else if (o + VL <= dxn + img_dx) {
            vstore<VL>(o, acc);  // lanes past C land on the next pixel, which is stored after this one
          } else {
            vstore_partial<VL>(o, acc, C);
          }
        }
      }
    }
  });
}

template <int VL>
static int64_t conv_bwd_data_ws(const Conv2dParams& p, int nthreads) {
  Conv2dParams q;
  if (bwd_data_by_cols<VL>(p)) return bwd_cols_ws<VL>(p, nthreads);
  if (bwd_data_as_forward(p, &q)) return conv_fwd_ws<VL>(q, nthreads);
  if (!bwd_by_phases(p)) return int64_t(p.R) * p.S * p.C * p.K;  // the gather kernel's transposed weights
  const int KB = conv_nv(p.C, VL) * VL;
  int64_t most = 0;
  for (int a = 0; a < p.sh; ++a)
    for (int b = 0; b < p.sw; ++b) {
      const BwdPhase rh = bwd_phase(a, p.H, p.P, p.R, p.sh, p.dh, p.pt);
      const BwdPhase rw = bwd_phase(b, p.W, p.Q, p.S, p.sw, p.dw, p.pl);
      if (rh.taps == 0 || rw.taps == 0) continue;
      const Conv2dParams f = phase_problem(p, rh, rw);
      const int64_t need = round_up(int64_t(p.N) * f.H * f.W * f.C, 16) + int64_t(f.R) * f.S * f.C * round_up(f.K, KB);
      most = most > need ? most : need;
    }
  return most;
}

// dy: [N,P,Q,K]  w: [R,S,C,K]  dx: [N,H,W,C]; accumulate: dx += the gradient.
template <int VL>
static void conv2d_backward_data_blocked(float* dx, const float* dy, const float* w, float* ws, const Conv2dParams& p,
                                         bool accumulate) {
  if (portable_is_better(p)) return conv2d_backward_data<float>(dx, dy, w, ws, p, accumulate);
  if (bwd_data_by_cols<VL>(p)) return conv_bwd_data_cols<VL>(dx, dy, w, ws, p, accumulate);
  Conv2dParams q;
  if (bwd_data_as_forward(p, &q)) {
    const int NV = conv_nv(q.K, VL), KB = NV * VL;
    float* wp = ws + pad_scratch(conv_geom(q), get_num_threads());
    pack_conv_weights(wp, nullptr, w, nullptr, p.R, p.S, p.C, p.K, KB, true);
    q.relu = 0;
    conv_fwd_packed<VL>(dx, dy, wp, nullptr, q, ws, NV, accumulate);
    return;
  }
  if (!bwd_by_phases(p)) {
    conv2d_backward_data<float>(dx, dy, w, ws, p, accumulate);
    return;
  }
  const int NV = conv_nv(p.C, VL), KB = NV * VL;
  for_each_bwd_phase(dx, dy, ws, p, accumulate,
                     [&](float* dx0, const float* src, float* rest, const Conv2dParams& f, const BwdPhase& rh,
                         const BwdPhase& rw, const YLayout& yl) {
                       pack_phase_weights(rest, w, p, rh, rw, KB);
                       conv_fwd_packed<VL>(dx0, src, rest, nullptr, f, nullptr, NV, accumulate, &yl);
                     });
}

// Weight-gradient tile over one image: MC consecutive reduction channels j (input channels, or
// (s, c) pairs of a kernel row when the width dilation is 1) x NV vectors of output channels.
// x0 points at the first channel of output pixel (0, 0)'s window for this tap; dy has row stride ldd
// (K, or K rounded up to the vector width when the image's dy was repacked to avoid tail loads).
template <int VL, int MC, int NV>
static inline void conv_bwd_w_tile(float* dw, int ldw, int kvalid, const float* x0, int64_t x_rows, int64_t xs_stride,
                                   const float* dy, int ldd, int P, int Q) {
  typedef Vec<VL> V;
  V acc[MC][NV];
  for (int i = 0; i < MC; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = vzero<VL>();
  for (int oh = 0; oh < P; ++oh) {
    const float* xr = x0 + oh * x_rows;
    const float* dyr = dy + int64_t(oh) * Q * ldd;
    for (int ow = 0; ow < Q; ++ow) {
      const float* xp = xr + ow * xs_stride;
      const float* dp = dyr + int64_t(ow) * ldd;
      V d[NV];
      for (int v = 0; v < NV; ++v) d[v] = vload<VL>(dp + v * VL);
      for (int i = 0; i < MC; ++i) {
        const V xb = vbroadcast<VL>(xp[i]);
        for (int v = 0; v < NV; ++v) acc[i][v] += xb * d[v];
      }
    }
  }
  for (int i = 0; i < MC; ++i) {
    float* o = dw + int64_t(i) * ldw;
    for (int v = 0; v < NV; ++v) {
      const int lanes = kvalid - v * VL;
      if (lanes >= VL) vstore<VL>(o + v * VL, vload<VL>(o + v * VL) + acc[i][v]);
      else if (lanes > 0) vstore_partial<VL>(o + v * VL, vload_partial<VL>(o + v * VL, lanes) + acc[i][v], lanes);
    }
  }
}

// dy: one image [P,Q,ldd] (the K tail zero-filled when ldd > K)
template <int VL, int NV>
static void conv_bwd_w_image(float* dw, const float* x, const float* dy, int ldd, const Conv2dParams& p,
                             const ConvGeom& g) {
  constexpr int MCMAX = NV == 2 ? Tile<VL>::MR2 : Tile<VL>::MR1;
  const int KB = NV * VL, nkb = int((p.K + KB - 1) / KB);
  const int64_t x_row = int64_t(g.Wp) * p.C, xs_stride = int64_t(p.sw) * p.C, x_rows = int64_t(p.sh) * x_row;
  const bool flat = p.dw == 1;  // (s, c) pairs of a kernel row are contiguous: one channel axis of S*C
  const int SJ = flat ? 1 : p.S, J = flat ? p.S * p.C : p.C;
  for (int r = 0; r < p.R; ++r)
    for (int s = 0; s < SJ; ++s)
      for (int kb = 0; kb < nkb; ++kb) {
        const int k0 = kb * KB, kvalid = p.K - k0;
        float* dwt = dw + (int64_t(r * p.S + s) * p.C) * p.K + k0;
        const float* xt = x + int64_t(r) * p.dh * x_row + int64_t(s) * p.dw * p.C;
        const float* dyt = dy + k0;
        int j0 = 0;
        for (; j0 + MCMAX <= J; j0 += MCMAX)
          conv_bwd_w_tile<VL, MCMAX, NV>(dwt + int64_t(j0) * p.K, p.K, kvalid, xt + j0, x_rows, xs_stride, dyt, ldd,
                                         p.P, p.Q);
        const int rem = J - j0;
        float* o = dwt + int64_t(j0) * p.K;
        const float* xo = xt + j0;
#define CNNBP_TAIL(m) \
  case m:             \
    if constexpr (m < MCMAX) conv_bwd_w_tile<VL, m, NV>(o, p.K, kvalid, xo, x_rows, xs_stride, dyt, ldd, p.P, p.Q); \
    break;
        switch (rem) {
          CNNBP_TAIL(1) CNNBP_TAIL(2) CNNBP_TAIL(3) CNNBP_TAIL(4) CNNBP_TAIL(5) CNNBP_TAIL(6) CNNBP_TAIL(7)
          CNNBP_TAIL(8) CNNBP_TAIL(9) CNNBP_TAIL(10) CNNBP_TAIL(11) CNNBP_TAIL(12) CNNBP_TAIL(13)
          default: break;
        }
#undef CNNBP_TAIL
      }
}

// Weight gradient of single-channel layers (LeNet's 5x5 first layer over a grey image), vectorised
// over output pixels instead of filters. With C = 1 the tiles above hold S taps x K filters: one
// broadcast per multiply-add, and LeNet's 6 filters fill 6 of 16 lanes. Here, per image, x is
// copied into zero-padded rows (Wq wide) and dy transposed to [K][P][Qv] (Qv: Q rounded up to the
// vector width, zero tail); then per kernel row r and chunk of KC filters, S*KC vector
// accumulators of VL pixels take one x load per tap and one dy load per filter for every VL
// pixels. The accumulators live in memory across the images of a block ([R][S][Kc] vectors) and
// their lanes are summed in a fixed order at the block's end: the same bits on any thread count.
template <int VL, int S>
struct PixKC {  // filters per chunk: S*KC accumulators + KC dy vectors + 1 x vector in registers
  static constexpr int v = VL >= 16 ? (S == 5 ? 4 : 6) : (S == 5 ? 2 : 3);
};

static inline bool bwd_w_by_pixels(const Conv2dParams& p) {
  return p.C == 1 && p.sw == 1 && p.dw == 1 && (p.S == 3 || p.S == 5) && p.K <= 32 && p.Q >= 8;
}

struct PixGeom {
  int Qv, Wq, Hq, Kc;  // padded row lengths and rows; K rounded up to the chunk
  int64_t xq, dyt, acc, per_thread;
};
template <int VL>
static inline PixGeom pix_geom(const Conv2dParams& p) {
  PixGeom g;
  const int KC = p.S == 5 ? PixKC<VL, 5>::v : PixKC<VL, 3>::v;
  g.Qv = int(round_up(p.Q, VL));
  g.Wq = g.Qv + p.S - 1;
  g.Hq = (p.P - 1) * p.sh + (p.R - 1) * p.dh + 1;
  g.Kc = int(round_up(p.K, KC));
  g.xq = round_up(int64_t(g.Hq) * g.Wq, 16);
  g.dyt = int64_t(g.Kc) * p.P * g.Qv;
  g.acc = int64_t(p.R) * p.S * g.Kc * VL;
  g.per_thread = g.xq + g.dyt + g.acc;
  return g;
}

template <int VL, int S>
static void conv_bwd_w_pixels_image(float* acc, const float* xq, const float* dyt, const Conv2dParams& p,
                                    const PixGeom& g) {
  typedef Vec<VL> V;
  constexpr int KC = PixKC<VL, S>::v;
  const int64_t kstride = int64_t(p.P) * g.Qv;
  for (int r = 0; r < p.R; ++r)
    for (int k0 = 0; k0 < g.Kc; k0 += KC) {
      V a[S][KC];
      float* ar = acc + ((int64_t(r) * S) * g.Kc + k0) * VL;  // [s][k] vectors of this row and chunk
      for (int s = 0; s < S; ++s)
        for (int kk = 0; kk < KC; ++kk) a[s][kk] = vload<VL>(ar + (int64_t(s) * g.Kc + kk) * VL);
      for (int oh = 0; oh < p.P; ++oh) {
        const float* xr = xq + int64_t(oh * p.sh + r * p.dh) * g.Wq;
        const float* dr = dyt + int64_t(k0) * kstride + int64_t(oh) * g.Qv;
        for (int ow = 0; ow < g.Qv; ow += VL) {
          V d[KC];
          for (int kk = 0; kk < KC; ++kk) d[kk] = vload<VL>(dr + kk * kstride + ow);
          for (int s = 0; s < S; ++s) {
            const V xv = vload<VL>(xr + ow + s);
            for (int kk = 0; kk < KC; ++kk) a[s][kk] += xv * d[kk];
          }
        }
      }
      for (int s = 0; s < S; ++s)
        for (int kk = 0; kk < KC; ++kk) vstore<VL>(ar + (int64_t(s) * g.Kc + kk) * VL, a[s][kk]);
    }
}

template <int VL>
static int64_t conv_bwd_w_pixels_ws(const Conv2dParams& p, int nthreads) {
  const int64_t nw = int64_t(p.R) * p.S * p.C * p.K;
  return int64_t(conv_dw_blocks(p) - 1) * (nw + p.K) + int64_t(nthreads > 1 ? nthreads : 1) * pix_geom<VL>(p).per_thread;
}

// dy: [N,P,Q,K]  x: [N,H,W,1]  dw: [R,S,1,K]  db: [K] or null
template <int VL>
static void conv_bwd_w_pixels(float* dw, float* db, const float* dy, const float* x, float* ws, const Conv2dParams& p) {
  const PixGeom g = pix_geom<VL>(p);
  const int64_t nw = int64_t(p.R) * p.S * p.K, stride = nw + p.K;
  const int nb = conv_dw_blocks(p);
  float* partials = ws;
  float* scratch = ws + int64_t(nb - 1) * stride;
  const int64_t img_y = int64_t(p.P) * p.Q * p.K;
  const int64_t per_block = int64_t(p.P) * p.Q * p.R * p.S * p.K * ((int64_t(p.N) + nb - 1) / nb);
  parallel_for(nb, grain(per_block), [&](int64_t b0, int64_t b1, int tid) {
    float* xq = scratch + tid * g.per_thread;
    float* dyt = xq + g.xq;
    float* acc = dyt + g.dyt;
    // The padding (x's border, dy's tail columns and filters past K) is zero for every image.
    for (int64_t i = 0; i < g.xq + g.dyt; ++i) xq[i] = 0.0f;
    for (int64_t b = b0; b < b1; ++b) {
      float* aw = b == 0 ? dw : partials + (b - 1) * stride;
      float* ab = b == 0 ? db : partials + (b - 1) * stride + nw;
      for (int64_t i = 0; i < g.acc; ++i) acc[i] = 0.0f;
      if (db) for (int k = 0; k < p.K; ++k) ab[k] = 0.0f;
      const int n0 = int(block_begin(p.N, nb, b)), n1 = int(block_begin(p.N, nb, b + 1));
      for (int n = n0; n < n1; ++n) {
        const float* xn = x + int64_t(n) * p.H * p.W;
        // Row iq holds input row iq - pt, column j input column j - pl (inside the image only).
        const int ia = imax(p.pt, 0), ib = imin(g.Hq, p.H + p.pt), ja = p.pl, jb = imin(g.Wq, p.W + p.pl);
        for (int iq = ia; iq < ib; ++iq) {
          float* row = xq + int64_t(iq) * g.Wq;
          const float* src = xn + int64_t(iq - p.pt) * p.W;
          for (int j = ja; j < jb; ++j) row[j] = src[j - p.pl];
        }
        const float* dyn = dy + n * img_y;
        for (int oh = 0; oh < p.P; ++oh)
          for (int ow = 0; ow < p.Q; ++ow) {
            const float* src = dyn + (int64_t(oh) * p.Q + ow) * p.K;
            float* o = dyt + int64_t(oh) * g.Qv + ow;
            for (int k = 0; k < p.K; ++k) o[k * int64_t(p.P) * g.Qv] = src[k];
          }
        if (p.S == 5) conv_bwd_w_pixels_image<VL, 5>(acc, xq, dyt, p, g);
        else conv_bwd_w_pixels_image<VL, 3>(acc, xq, dyt, p, g);
        if (db)
          for (int64_t px = 0; px < int64_t(p.P) * p.Q; ++px)
            for (int k = 0; k < p.K; ++k) ab[k] += dyn[px * p.K + k];
      }
      for (int r = 0; r < p.R; ++r)  // lanes summed in order: a vector's pixels, then nothing else
        for (int s = 0; s < p.S; ++s)
          for (int k = 0; k < p.K; ++k) {
            const float* v = acc + ((int64_t(r) * p.S + s) * g.Kc + k) * VL;
            float t = 0.0f;
            for (int l = 0; l < VL; ++l) t += v[l];
            aw[(int64_t(r) * p.S + s) * p.K + k] = t;
          }
    }
  });
  add_block_partials(dw, db, partials, nw, p.K, nb);
}

// Floats of one image's dy repacked with K rounded up to the tile width (0 when K needs no tail).
template <int VL>
static inline int64_t dy_pack_size(const Conv2dParams& p) {
  const int KB = conv_nv(p.K, VL) * VL;
  return p.K % KB ? int64_t(p.P) * p.Q * round_up(p.K, KB) : 0;
}

// Workspace: [padded images, one per thread][conv_dw_blocks - 1 partial dw + db][dy packs, one
// per thread]
template <int VL>
static int64_t conv_bwd_weight_ws(const Conv2dParams& p, int nthreads) {
  if (bwd_w_by_pixels(p)) return conv_bwd_w_pixels_ws<VL>(p, nthreads);
  const int64_t nw = int64_t(p.R) * p.S * p.C * p.K;
  const int nt = nthreads > 1 ? nthreads : 1;
  return pad_scratch(conv_geom(p), nt) + int64_t(conv_dw_blocks(p) - 1) * (nw + p.K) + int64_t(nt) * dy_pack_size<VL>(p);
}

// dy: [N,P,Q,K]  x: [N,H,W,C]  dw: [R,S,C,K]  db: [K] or null
template <int VL>
static void conv2d_backward_weight_blocked(float* dw, float* db, const float* dy, const float* x, float* ws,
                                           const Conv2dParams& p) {
  if (portable_is_better(p)) return conv2d_backward_weight<float>(dw, db, dy, x, ws, p);
  if (bwd_w_by_pixels(p)) return conv_bwd_w_pixels<VL>(dw, db, dy, x, ws, p);
  if constexpr (VL == 16) {
    if (narrow_k(p.K)) return conv2d_backward_weight_blocked<8>(dw, db, dy, x, ws, p);
  }
  const ConvGeom g = conv_geom(p);
  float* partials = ws + pad_scratch(g, get_num_threads());
  const int64_t nw = int64_t(p.R) * p.S * p.C * p.K, stride = nw + p.K;
  const int nb = conv_dw_blocks(p);
  const int64_t per_block = int64_t(p.P) * p.Q * p.R * p.S * p.C * p.K * ((int64_t(p.N) + nb - 1) / nb);
  const int64_t dpack = dy_pack_size<VL>(p);
  float* dy_packs = partials + int64_t(nb - 1) * stride;
  const int KB = conv_nv(p.K, VL) * VL, ldp = int(round_up(p.K, KB));
  const int64_t img_y = int64_t(p.P) * p.Q * p.K;
  const int NV = conv_nv(p.K, VL);
  parallel_for(nb, grain(per_block), [&](int64_t b0, int64_t b1, int tid) {
    float* mine = ws + tid * g.img_pad;
    int mine_n = -1;
    for (int64_t b = b0; b < b1; ++b) {
      float* aw = b == 0 ? dw : partials + (b - 1) * stride;
      float* ab = b == 0 ? db : partials + (b - 1) * stride + nw;
      for (int64_t i = 0; i < nw; ++i) aw[i] = 0.0f;
      if (db) for (int k = 0; k < p.K; ++k) ab[k] = 0.0f;
      const int n0 = int(block_begin(p.N, nb, b)), n1 = int(block_begin(p.N, nb, b + 1));
      for (int n = n0; n < n1; ++n) {
        const float* xn = image_for<VL>(x, n, mine, &mine_n, p, g);
        const float* dyn = dy + n * img_y;
        const float* dyt = dyn;
        int ldd = p.K;
        if (dpack) {  // zero-fill the K tail once per image instead of masking every load
          float* dst = dy_packs + tid * dpack;
          for (int64_t px = 0; px < int64_t(p.P) * p.Q; ++px)
            for (int k = 0; k < ldp; ++k) dst[px * ldp + k] = k < p.K ? dyn[px * p.K + k] : 0.0f;
          dyt = dst;
          ldd = ldp;
        }
        if (NV == 2) conv_bwd_w_image<VL, 2>(aw, xn, dyt, ldd, p, g);
        else conv_bwd_w_image<VL, 1>(aw, xn, dyt, ldd, p, g);
        if (db)
          for (int64_t px = 0; px < int64_t(p.P) * p.Q; ++px)
            for (int k = 0; k < p.K; ++k) ab[k] += dyn[px * p.K + k];
      }
    }
  });
  add_block_partials(dw, db, partials, nw, p.K, nb);
}

template <int VL>
static int64_t conv2d_workspace_blocked(const Conv2dParams& p, int nthreads) {
  if (portable_is_better(p)) return conv2d_workspace(p, nthreads);
  const int64_t a = conv_fwd_ws<VL>(p, nthreads), b = conv_bwd_data_ws<VL>(p, nthreads),
                c = conv_bwd_weight_ws<VL>(p, nthreads);
  return a > b ? (a > c ? a : c) : (b > c ? b : c);
}
