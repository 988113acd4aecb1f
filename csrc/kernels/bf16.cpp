// The mixed-precision kernel tables (see bf16.h): the emulated kernels, the choice of path, and the
// tables that put them (or the AVX512_BF16 kernels) in place of the fp32 conv2d and dense entries.
#include "kernels/bf16.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "core/parallel.h"

namespace cnnbp {

namespace {

int64_t align16(int64_t n) { return (n + 15) / 16 * 16; }

const KernelTable<float>& f32() { return kernels_f32(); }
void round_copy(float* dst, const float* src, int64_t n) { f32().round_bf16(dst, src, n); }

// Emulated conv2d: the operands of the pass rounded into the front of the workspace, the fp32
// kernel behind them. Bias gradients are sums of the unrounded dy, in fp32, on every path.
int64_t conv_elems_x(const Conv2dParams& p) { return int64_t(p.N) * p.H * p.W * p.C; }
int64_t conv_elems_y(const Conv2dParams& p) { return int64_t(p.N) * p.P * p.Q * p.K; }
int64_t conv_elems_w(const Conv2dParams& p) { return int64_t(p.R) * p.S * p.C * p.K; }

// The emulation's products are exact in fp32 only in the direct kernels (Winograd's transforms
// would multiply the rounded operands by other constants first).
Conv2dParams direct(const Conv2dParams& p) {
  Conv2dParams q = p;
  q.algo = kConvDirect;
  return q;
}

int64_t emu_conv2d_workspace(const Conv2dParams& p, int nthreads) {
  const int64_t x = align16(conv_elems_x(p)), y = align16(conv_elems_y(p)), w = align16(conv_elems_w(p));
  const int64_t most = std::max(x + w, std::max(y + w, x + y));
  return most + f32().conv2d_workspace(direct(p), nthreads);
}

void emu_conv2d_forward(float* y, const float* x, const float* w, const float* b, float* ws, const Conv2dParams& p) {
  float* xr = ws;
  float* wr = xr + align16(conv_elems_x(p));
  round_copy(xr, x, conv_elems_x(p));
  round_copy(wr, w, conv_elems_w(p));
  f32().conv2d_forward(y, xr, wr, b, wr + align16(conv_elems_w(p)), direct(p));
}

void emu_conv2d_backward_data(float* dx, const float* dy, const float* w, float* ws, const Conv2dParams& p,
                              bool accumulate) {
  float* dyr = ws;
  float* wr = dyr + align16(conv_elems_y(p));
  round_copy(dyr, dy, conv_elems_y(p));
  round_copy(wr, w, conv_elems_w(p));
  f32().conv2d_backward_data(dx, dyr, wr, wr + align16(conv_elems_w(p)), direct(p), accumulate);
}

void emu_conv2d_backward_weight(float* dw, float* db, const float* dy, const float* x, float* ws,
                                const Conv2dParams& p) {
  float* xr = ws;
  float* dyr = xr + align16(conv_elems_x(p));
  round_copy(xr, x, conv_elems_x(p));
  round_copy(dyr, dy, conv_elems_y(p));
  f32().conv2d_backward_weight(dw, nullptr, dyr, xr, dyr + align16(conv_elems_y(p)), direct(p));
  if (db) f32().channel_bias_grad(db, dy, int64_t(p.N) * p.P * p.Q, p.K);
}

// Emulated dense: x [N,I], w [I,O], dy [N,O].
int64_t emu_dense_workspace(int N, int I, int O) {
  const int64_t x = align16(int64_t(N) * I), y = align16(int64_t(N) * O), w = align16(int64_t(I) * O);
  return std::max(x + w, std::max(y + w, x + y)) + f32().dense_workspace(N, I, O);
}

void emu_dense_forward(float* y, const float* x, const float* w, const float* b, int N, int I, int O, float* ws) {
  float* xr = ws;
  float* wr = xr + align16(int64_t(N) * I);
  round_copy(xr, x, int64_t(N) * I);
  round_copy(wr, w, int64_t(I) * O);
  f32().dense_forward(y, xr, wr, b, N, I, O, wr + align16(int64_t(I) * O));
}

void emu_dense_backward_data(float* dx, const float* dy, const float* w, int N, int I, int O, float* ws,
                             bool accumulate) {
  float* dyr = ws;
  float* wr = dyr + align16(int64_t(N) * O);
  round_copy(dyr, dy, int64_t(N) * O);
  round_copy(wr, w, int64_t(I) * O);
  f32().dense_backward_data(dx, dyr, wr, N, I, O, wr + align16(int64_t(I) * O), accumulate);
}

void emu_dense_backward_weight(float* dw, float* db, const float* dy, const float* x, int N, int I, int O,
                               float* ws) {
  float* xr = ws;
  float* dyr = xr + align16(int64_t(N) * I);
  round_copy(xr, x, int64_t(N) * I);
  round_copy(dyr, dy, int64_t(N) * O);
  f32().dense_backward_weight(dw, nullptr, dyr, xr, N, I, O, dyr + align16(int64_t(N) * O));
  if (db) f32().channel_bias_grad(db, dy, N, O);
}

#ifdef CNNBP_HAVE_AVX512BF16
// The hardware table: vdpbf16ps where the kernels take the problem, the emulated kernel otherwise.
int64_t hw_conv2d_workspace(const Conv2dParams& p, int nthreads) {
  return std::max(isa_avx512bf16::conv2d_workspace(p, nthreads), emu_conv2d_workspace(p, nthreads));
}
// A first layer (1 to 3 input channels) is faster emulated: the fp32 kernels have fully unrolled
// tiles for it, where vdpbf16ps would pad the channels to pairs (measured: 3->32 32x32, 1.0 ms
// against 0.7 ms emulated for a batch of 32).
void hw_conv2d_forward(float* y, const float* x, const float* w, const float* b, float* ws, const Conv2dParams& p) {
  if (p.C < 4 || !isa_avx512bf16::conv2d_forward(y, x, w, b, ws, p)) emu_conv2d_forward(y, x, w, b, ws, p);
}
void hw_conv2d_backward_data(float* dx, const float* dy, const float* w, float* ws, const Conv2dParams& p,
                             bool accumulate) {
  if (!isa_avx512bf16::conv2d_backward_data(dx, dy, w, ws, p, accumulate))
    emu_conv2d_backward_data(dx, dy, w, ws, p, accumulate);
}
void hw_conv2d_backward_weight(float* dw, float* db, const float* dy, const float* x, float* ws,
                               const Conv2dParams& p) {
  if (!isa_avx512bf16::conv2d_backward_weight(dw, dy, x, ws, p)) return emu_conv2d_backward_weight(dw, db, dy, x, ws, p);
  if (db) f32().channel_bias_grad(db, dy, int64_t(p.N) * p.P * p.Q, p.K);
}
#endif

// Where the float32 table gives a stride-1 3x3 pass Winograd, the pass runs those fp32 kernels in
// place of the bf16 direct ones once the layer is wide enough: F(4x4) does a quarter of the
// multiplications and there beats vdpbf16ps's twice-as-fast direct products. Timed per pass on a
// Zen 4 with 2 threads, batch 64 and 128 (bench/README.md, "Mixed precision"):
// - forward and data gradient: from C*K = 32*64 on (16x16 32->64 5-25 % faster, 8x8 128->128
//   15-25 %); at 16x16 32->32 and 32x32 16->16 (C*K <= 1024) bf16 direct stays 8-40 % faster;
// - weight gradient (whose Winograd form sums transformed tiles over the batch): from C*K = 128*128
//   on (8x8 128->128 20-33 %, 4x4 256->256 about 2x); at 64 channels it ties or loses.
// Both rules read C*K, the same for a pass and its transpose. Winograd also rounds less than bf16
// products. In bf16 itself Winograd would lose the accuracy it needs: F(4x4)'s transformed operands
// rounded to bf16 give output errors of 4-13 % of the largest output (F(2x2): 0.35-0.65 %, bf16
// direct 0.24 %; a numpy simulation over 16-128 channels).
// CNNBP_CONV_ALGO and the ops' algo= force the fp32 algorithm as on the float32 table.
constexpr int64_t kBf16WinogradMinCK = 32 * 64, kBf16WinogradMinCKWeight = 128 * 128;
int bf16_conv_algorithm(const Conv2dParams& p, int pass) {
  const int a = f32().conv2d_algorithm(p, pass);
  if (a == kConvDirect || p.algo != kConvAuto || conv_algo_setting() > 0) return a;
  const int64_t ck = int64_t(p.C) * p.K;
  return ck >= (pass == 2 ? kBf16WinogradMinCKWeight : kBf16WinogradMinCK) ? a : int(kConvDirect);
}
// Whether the pass runs an fp32 Winograd kernel; q: p with that algorithm forced.
bool fp32_winograd(const Conv2dParams& p, int pass, Conv2dParams* q) {
  const int a = bf16_conv_algorithm(p, pass);
  if (a == kConvDirect) return false;
  *q = p;
  q->algo = a;
  return true;
}

// The table's conv2d entries: the fp32 Winograd pass where bf16_conv_algorithm takes it, else the
// path's bf16 direct kernel.
template <Bf16Path P>
int64_t conv_workspace(const Conv2dParams& p, int nthreads) {
  int64_t own = emu_conv2d_workspace(p, nthreads);
#ifdef CNNBP_HAVE_AVX512BF16
  if (P == Bf16Path::avx512_bf16) own = hw_conv2d_workspace(p, nthreads);
#endif
  return std::max(own, f32().conv2d_workspace(p, nthreads));
}
template <Bf16Path P>
void conv_forward(float* y, const float* x, const float* w, const float* b, float* ws, const Conv2dParams& p) {
  Conv2dParams q;
  if (fp32_winograd(p, 0, &q)) return f32().conv2d_forward(y, x, w, b, ws, q);
#ifdef CNNBP_HAVE_AVX512BF16
  if (P == Bf16Path::avx512_bf16) return hw_conv2d_forward(y, x, w, b, ws, p);
#endif
  emu_conv2d_forward(y, x, w, b, ws, p);
}
template <Bf16Path P>
void conv_backward_data(float* dx, const float* dy, const float* w, float* ws, const Conv2dParams& p,
                        bool accumulate) {
  Conv2dParams q;
  if (fp32_winograd(p, 1, &q)) return f32().conv2d_backward_data(dx, dy, w, ws, q, accumulate);
#ifdef CNNBP_HAVE_AVX512BF16
  if (P == Bf16Path::avx512_bf16) return hw_conv2d_backward_data(dx, dy, w, ws, p, accumulate);
#endif
  emu_conv2d_backward_data(dx, dy, w, ws, p, accumulate);
}
template <Bf16Path P>
void conv_backward_weight(float* dw, float* db, const float* dy, const float* x, float* ws, const Conv2dParams& p) {
  Conv2dParams q;
  if (fp32_winograd(p, 2, &q)) return f32().conv2d_backward_weight(dw, db, dy, x, ws, q);
#ifdef CNNBP_HAVE_AVX512BF16
  if (P == Bf16Path::avx512_bf16) return hw_conv2d_backward_weight(dw, db, dy, x, ws, p);
#endif
  emu_conv2d_backward_weight(dw, db, dy, x, ws, p);
}

template <Bf16Path P>
KernelTable<float> make_bf16_table() {
  KernelTable<float> t = f32();
  t.isa = P == Bf16Path::avx512_bf16 ? "avx512_bf16" : "bf16-emulated";
  t.conv2d_workspace = conv_workspace<P>;
  t.conv2d_forward = conv_forward<P>;
  t.conv2d_backward_data = conv_backward_data<P>;
  t.conv2d_backward_weight = conv_backward_weight<P>;
  t.conv2d_algorithm = bf16_conv_algorithm;
  t.conv2d_prologue_ok = nullptr;  // (the float table's would run float32 convolutions)
  t.conv2d_forward_pre = nullptr;
  t.conv2d_backward_weight_pre = nullptr;
  t.dense_workspace = emu_dense_workspace;
  t.dense_forward = emu_dense_forward;
  t.dense_backward_data = emu_dense_backward_data;
  t.dense_backward_weight = emu_dense_backward_weight;
  return t;
}

}  // namespace

bool bf16_compiled() {
#ifdef CNNBP_HAVE_AVX512BF16
  return true;
#else
  return false;
#endif
}

Bf16Path bf16_detected() {
#if defined(CNNBP_HAVE_AVX512BF16) && (defined(__x86_64__) || defined(_M_X64))
  __builtin_cpu_init();
  if (detected_capability() == CpuCapability::avx512 && __builtin_cpu_supports("avx512bf16"))
    return Bf16Path::avx512_bf16;
#endif
  return Bf16Path::emulated;
}

Bf16Path bf16_path() {
  static const Bf16Path chosen = [] {
    if (cpu_capability() != CpuCapability::avx512) return Bf16Path::emulated;  // the fp32 path was lowered
    const char* s = std::getenv("CNNBP_BF16");
    if (s && !std::strcmp(s, "emulated")) return Bf16Path::emulated;
    return bf16_detected();
  }();
  return chosen;
}

const char* bf16_path_name(Bf16Path p) { return p == Bf16Path::avx512_bf16 ? "avx512_bf16" : "emulated"; }

const KernelTable<float>& kernels_bf16_for(Bf16Path p) {
  static const KernelTable<float> emulated = make_bf16_table<Bf16Path::emulated>();
  static const KernelTable<float> hardware = make_bf16_table<Bf16Path::avx512_bf16>();
  return p == Bf16Path::avx512_bf16 && bf16_compiled() ? hardware : emulated;
}

const KernelTable<float>& kernels_bf16() { return kernels_bf16_for(bf16_path()); }

}  // namespace cnnbp
