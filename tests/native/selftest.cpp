// Native kernel self-test: every float kernel path compiled into this build (baseline, AVX2,
// AVX-512 and AVX2's 16-float tiling on x86-64; baseline and NEON on aarch64) that this CPU can
// run, against the portable templates in float64, on random shapes; and the mixed-precision
// tables' conv2d and dense kernels (emulated, and AVX512_BF16 where the CPU has it) against the
// same templates on bf16-rounded operands. No Python: it runs where the
// extension cannot (a cross build under qemu-aarch64) and natively in CI on every path.
//
//   cmake -S . -B build/selftest -DCNNBP_PYTHON=OFF -DCNNBP_BUILD_SELFTEST=ON && cmake --build build/selftest
//   build/selftest/cnnbp_selftest [--trials N] [--threads N] [--seed N]
//
// Each comparison allows max |got - want| <= tol * max |want| + 1e-6, tol 1e-5 for elementwise
// kernels and 2e-4 for reductions (float32 sums); a wrong index or a missed tail is off by O(1).
// Exit status 0 when every comparison passes, 1 otherwise (each failure printed with its shape).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/buffer.h"
#include "core/cpu.h"
#include "core/parallel.h"
#include "kernels/bf16.h"
#include "kernels/kernels.h"

using namespace cnnbp;

namespace {

using F = KernelTable<float>;
using D = KernelTable<double>;

struct Rng {
  std::mt19937_64 g;
  explicit Rng(uint64_t seed) : g(seed) {}
  int range(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(g); }  // [lo, hi]
  float uni(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(g); }
  bool coin() { return range(0, 1) == 1; }
  std::vector<float> vec(size_t n, float lo = -1.0f, float hi = 1.0f) {
    std::vector<float> v(n);
    for (auto& x : v) x = uni(lo, hi);
    return v;
  }
};

std::vector<double> dbl(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

// The reference's operands: as they are, or rounded to bfloat16 values (a mixed-precision table
// multiplies those exactly and sums in fp32).
std::vector<double> operand(const std::vector<float>& v, bool bf16) {
  std::vector<double> d(v.size());
  for (size_t i = 0; i < v.size(); ++i) d[i] = bf16 ? double(bf16_round(v[i])) : double(v[i]);
  return d;
}

struct Report {
  int checks = 0, failures = 0;
  void compare(const char* isa, const char* what, const float* got, const double* want, size_t n, double tol,
               const std::string& shape) {
    ++checks;
    double mx = 0.0, err = 0.0;
    size_t at = 0;
    bool finite = true;
    for (size_t i = 0; i < n; ++i) {
      mx = std::max(mx, std::fabs(want[i]));
      const double e = std::fabs(double(got[i]) - want[i]);
      if (!std::isfinite(double(got[i])) && std::isfinite(want[i])) finite = false;
      if (e > err) err = e, at = i;
    }
    if (finite && err <= tol * mx + 1e-6) return;
    ++failures;
    std::printf("FAIL %s %s %s: max error %.3g at %zu (got %.8g, want %.8g; max |want| %.3g)\n", isa, what,
                shape.c_str(), err, at, n ? double(got[at]) : 0.0, n ? want[at] : 0.0, mx);
  }
  void compare(const char* isa, const char* what, const std::vector<float>& got, const std::vector<double>& want,
               double tol, const std::string& shape) {
    compare(isa, what, got.data(), want.data(), std::min(got.size(), want.size()), tol, shape);
    if (got.size() != want.size()) ++failures;
  }
};

constexpr double kElem = 1e-5, kSum = 2e-4;

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
  char buf[256];
  va_list a;
  va_start(a, f);
  std::vsnprintf(buf, sizeof(buf), f, a);
  va_end(a);
  return buf;
}

void test_conv2d(const F& k, const D& r, Rng& g, Report& rep, int threads, bool bf16 = false) {
  // One in four: a first layer (one input channel, 3x3 or 5x5, no dilation), which the SIMD paths
  // run with fully unrolled tiles.
  const bool first = g.range(0, 3) == 0;
  const int N = g.range(1, 3), H = g.range(1, 12), W = g.range(1, 12), C = first ? 1 : g.range(1, 20);
  const int K = g.range(1, 40), R = first ? 3 + 2 * g.range(0, 1) : g.range(1, 5), S = first ? R : g.range(1, 5);
  const int sh = g.range(1, 3), sw = g.range(1, 3), dh = first ? 1 : g.range(1, 2), dw = first ? 1 : g.range(1, 2);
  const int pt = g.range(0, 2), pb = g.range(0, 2), pl = g.range(0, 2), pr = g.range(0, 2);
  Conv2dParams p;
  try {
    p = make_conv2d_params("selftest", N, H, W, C, K, R, S, sh, sw, dh, dw, pt, pb, pl, pr);
  } catch (const std::exception&) {
    return;  // no output pixel: not a valid layer
  }
  p.relu = g.coin();
  const std::string shape = fmt("N%d %dx%dx%d->%d k%dx%d s%d,%d d%d,%d pad %d,%d,%d,%d relu %d", N, H, W, C, K, R, S,
                                sh, sw, dh, dw, pt, pb, pl, pr, p.relu);
  const size_t nx = size_t(N) * H * W * C, nw = size_t(R) * S * C * K, ny = size_t(N) * p.P * p.Q * K;
  auto x = g.vec(nx), w = g.vec(nw), b = g.vec(K), dy = g.vec(ny), dx0 = g.vec(nx);
  auto xd = operand(x, bf16), wd = operand(w, bf16), bd = dbl(b), dyd = operand(dy, bf16);
  std::vector<float> ws(size_t(k.conv2d_workspace(p, threads)) + 1);
  std::vector<double> wsd(size_t(r.conv2d_workspace(p, threads)) + 1);
  std::vector<float> y(ny);
  std::vector<double> yd(ny);
  k.conv2d_forward(y.data(), x.data(), w.data(), b.data(), ws.data(), p);
  r.conv2d_forward(yd.data(), xd.data(), wd.data(), bd.data(), wsd.data(), p);
  rep.compare(k.isa, "conv2d_forward", y, yd, kSum, shape);
  p.relu = 0;
  for (bool acc : {false, true}) {
    std::vector<float> dx = dx0;
    std::vector<double> dxd = dbl(dx0);
    k.conv2d_backward_data(dx.data(), dy.data(), w.data(), ws.data(), p, acc);
    r.conv2d_backward_data(dxd.data(), dyd.data(), wd.data(), wsd.data(), p, acc);
    rep.compare(k.isa, acc ? "conv2d_backward_data(accumulate)" : "conv2d_backward_data", dx, dxd, kSum, shape);
  }
  std::vector<float> dwt(nw), db(K);
  std::vector<double> dwd(nw), dbd(K);
  k.conv2d_backward_weight(dwt.data(), db.data(), dy.data(), x.data(), ws.data(), p);
  r.conv2d_backward_weight(dwd.data(), dbd.data(), dyd.data(), xd.data(), wsd.data(), p);
  if (bf16) r.channel_bias_grad(dbd.data(), dbl(dy).data(), int64_t(N) * p.P * p.Q, K);  // fp32 sums of dy itself
  rep.compare(k.isa, "conv2d_backward_weight", dwt, dwd, kSum, shape);
  rep.compare(k.isa, "conv2d_backward_weight(bias)", db, dbd, kSum, shape);
}

// Winograd F(2x2,3x3) and F(4x4,3x3) forced on a random stride-1 3x3 layer (the portable path runs
// its direct kernels for them).
void test_winograd(const F& k, const D& r, Rng& g, Report& rep, int threads) {
  const int N = g.range(1, 3), H = g.range(1, 12), W = g.range(1, 12), C = g.range(1, 40), K = g.range(1, 40);
  const int pt = g.range(0, 2), pb = g.range(0, 2), pl = g.range(0, 2), pr = g.range(0, 2);
  Conv2dParams p;
  try {
    p = make_conv2d_params("selftest", N, H, W, C, K, 3, 3, 1, 1, 1, 1, pt, pb, pl, pr);
  } catch (const std::exception&) {
    return;
  }
  const int relu = g.coin();
  const size_t nx = size_t(N) * H * W * C, nw = size_t(9) * C * K, ny = size_t(N) * p.P * p.Q * K;
  auto x = g.vec(nx), w = g.vec(nw), b = g.vec(K), dy = g.vec(ny), dx0 = g.vec(nx);
  auto xd = dbl(x), wd = dbl(w), bd = dbl(b), dyd = dbl(dy);
  std::vector<double> wsd(size_t(r.conv2d_workspace(p, threads)) + 1), yd(ny), dxd = dbl(dx0), dwd(nw), dbd(K);
  p.relu = relu;
  r.conv2d_forward(yd.data(), xd.data(), wd.data(), bd.data(), wsd.data(), p);
  p.relu = 0;
  r.conv2d_backward_data(dxd.data(), dyd.data(), wd.data(), wsd.data(), p, true);
  r.conv2d_backward_weight(dwd.data(), dbd.data(), dyd.data(), xd.data(), wsd.data(), p);
  for (int algo : {int(kConvWinograd2), int(kConvWinograd4)}) {
    p.algo = algo;
    const std::string shape = fmt("N%d %dx%dx%d->%d pad %d,%d,%d,%d relu %d winograd%d", N, H, W, C, K, pt, pb, pl,
                                  pr, relu, algo);
    std::vector<float> ws(size_t(k.conv2d_workspace(p, threads)) + 1), y(ny), dx = dx0, dwt(nw), db(K);
    p.relu = relu;
    k.conv2d_forward(y.data(), x.data(), w.data(), b.data(), ws.data(), p);
    p.relu = 0;
    rep.compare(k.isa, "conv2d_forward", y, yd, kSum, shape);
    k.conv2d_backward_data(dx.data(), dy.data(), w.data(), ws.data(), p, true);
    rep.compare(k.isa, "conv2d_backward_data(accumulate)", dx, dxd, kSum, shape);
    k.conv2d_backward_weight(dwt.data(), db.data(), dy.data(), x.data(), ws.data(), p);
    rep.compare(k.isa, "conv2d_backward_weight", dwt, dwd, kSum, shape);
    rep.compare(k.isa, "conv2d_backward_weight(bias)", db, dbd, kSum, shape);
  }
}

void test_grouped_conv2d(const F& k, const D& r, Rng& g, Report& rep) {
  const int G = g.range(1, 4), N = g.range(1, 2), H = g.range(2, 9), W = g.range(2, 9);
  const int C = G * g.range(1, 3), K = G * g.range(1, 3), R = g.range(1, 3), S = g.range(1, 3), st = g.range(1, 2);
  const int pad = g.range(0, 1);
  Conv2dParams p;
  try {
    p = make_conv2d_params("selftest", N, H, W, C, K, R, S, st, st, 1, 1, pad, pad, pad, pad);
  } catch (const std::exception&) {
    return;
  }
  const std::string shape = fmt("G%d N%d %dx%dx%d->%d k%dx%d s%d pad %d", G, N, H, W, C, K, R, S, st, pad);
  const size_t nx = size_t(N) * H * W * C, nw = size_t(R) * S * (C / G) * K, ny = size_t(N) * p.P * p.Q * K;
  auto x = g.vec(nx), w = g.vec(nw), b = g.vec(K), dy = g.vec(ny);
  auto xd = dbl(x), wd = dbl(w), bd = dbl(b), dyd = dbl(dy);
  std::vector<float> y(ny), dx(nx), dwt(nw);
  std::vector<double> yd(ny), dxd(nx), dwd(nw);
  k.grouped_conv2d_forward(y.data(), x.data(), w.data(), b.data(), p, G);
  r.grouped_conv2d_forward(yd.data(), xd.data(), wd.data(), bd.data(), p, G);
  rep.compare(k.isa, "grouped_conv2d_forward", y, yd, kSum, shape);
  k.grouped_conv2d_backward_data(dx.data(), dy.data(), w.data(), p, G, false);
  r.grouped_conv2d_backward_data(dxd.data(), dyd.data(), wd.data(), p, G, false);
  rep.compare(k.isa, "grouped_conv2d_backward_data", dx, dxd, kSum, shape);
  k.grouped_conv2d_backward_weight(dwt.data(), x.data(), dy.data(), p, G);
  r.grouped_conv2d_backward_weight(dwd.data(), xd.data(), dyd.data(), p, G);
  rep.compare(k.isa, "grouped_conv2d_backward_weight", dwt, dwd, kSum, shape);
}

void test_dense(const F& k, const D& r, Rng& g, Report& rep, bool bf16 = false) {
  const int N = g.range(1, 20), I = g.range(1, 70), O = g.range(1, 40);
  const std::string shape = fmt("N%d %d->%d", N, I, O);
  auto x = g.vec(size_t(N) * I), w = g.vec(size_t(I) * O), b = g.vec(O), dy = g.vec(size_t(N) * O);
  auto dx0 = g.vec(size_t(N) * I);
  auto xd = operand(x, bf16), wd = operand(w, bf16), bd = dbl(b), dyd = operand(dy, bf16);
  std::vector<float> ws(size_t(k.dense_workspace(N, I, O)) + 1), y(size_t(N) * O), dwt(size_t(I) * O), db(O);
  std::vector<double> wsd(size_t(r.dense_workspace(N, I, O)) + 1), yd(size_t(N) * O), dwd(size_t(I) * O), dbd(O);
  k.dense_forward(y.data(), x.data(), w.data(), b.data(), N, I, O, ws.data());
  r.dense_forward(yd.data(), xd.data(), wd.data(), bd.data(), N, I, O, wsd.data());
  rep.compare(k.isa, "dense_forward", y, yd, kSum, shape);
  for (bool acc : {false, true}) {
    std::vector<float> dx = dx0;
    std::vector<double> dxd = dbl(dx0);
    k.dense_backward_data(dx.data(), dy.data(), w.data(), N, I, O, ws.data(), acc);
    r.dense_backward_data(dxd.data(), dyd.data(), wd.data(), N, I, O, wsd.data(), acc);
    rep.compare(k.isa, acc ? "dense_backward_data(accumulate)" : "dense_backward_data", dx, dxd, kSum, shape);
  }
  k.dense_backward_weight(dwt.data(), db.data(), dy.data(), x.data(), N, I, O, ws.data());
  r.dense_backward_weight(dwd.data(), dbd.data(), dyd.data(), xd.data(), N, I, O, wsd.data());
  if (bf16) r.channel_bias_grad(dbd.data(), dbl(dy).data(), N, O);
  rep.compare(k.isa, "dense_backward_weight", dwt, dwd, kSum, shape);
  rep.compare(k.isa, "dense_backward_weight(bias)", db, dbd, kSum, shape);
}

void test_pool2d(const F& k, const D& r, Rng& g, Report& rep) {
  const int N = g.range(1, 3), H = g.range(1, 11), W = g.range(1, 11), C = g.range(1, 20);
  const int R = g.range(1, 3), S = g.range(1, 3), st = g.range(1, 3), pad = g.range(0, 1);
  Pool2dParams p;
  try {
    p = make_pool2d_params("selftest", N, H, W, C, R, S, st, st, pad, pad, pad, pad);
  } catch (const std::exception&) {
    return;
  }
  const std::string shape = fmt("N%d %dx%dx%d k%dx%d s%d pad %d", N, H, W, C, R, S, st, pad);
  const size_t nx = size_t(N) * H * W * C, ny = size_t(N) * p.P * p.Q * C;
  auto x = g.vec(nx), dy = g.vec(ny);
  auto xd = dbl(x), dyd = dbl(dy);
  std::vector<float> y(ny), dx(nx);
  std::vector<double> yd(ny), dxd(nx);
  std::vector<int32_t> am(ny), amd(ny);
  k.max_pool2d_forward(y.data(), am.data(), x.data(), p);
  r.max_pool2d_forward(yd.data(), amd.data(), xd.data(), p);
  rep.compare(k.isa, "max_pool2d_forward", y, yd, kElem, shape);
  k.max_pool2d_backward(dx.data(), dy.data(), am.data(), p, nullptr);
  r.max_pool2d_backward(dxd.data(), dyd.data(), amd.data(), p, nullptr);
  rep.compare(k.isa, "max_pool2d_backward", dx, dxd, kElem, shape);
  k.max_pool2d_backward(dx.data(), dy.data(), am.data(), p, y.data());  // after a ReLU (x's sign varies)
  r.max_pool2d_backward(dxd.data(), dyd.data(), amd.data(), p, yd.data());
  rep.compare(k.isa, "max_pool2d_backward relu", dx, dxd, kElem, shape);
  k.avg_pool2d_forward(y.data(), x.data(), p);
  r.avg_pool2d_forward(yd.data(), xd.data(), p);
  rep.compare(k.isa, "avg_pool2d_forward", y, yd, kElem, shape);
  k.avg_pool2d_backward(dx.data(), dy.data(), p);
  r.avg_pool2d_backward(dxd.data(), dyd.data(), p);
  rep.compare(k.isa, "avg_pool2d_backward", dx, dxd, kElem, shape);
  // global pools over the same input
  const int HW = H * W;
  std::vector<float> gy(size_t(N) * C), gdx(nx);
  std::vector<double> gyd(size_t(N) * C), gdxd(nx);
  auto gdy = g.vec(size_t(N) * C);
  auto gdyd = dbl(gdy);
  std::vector<int32_t> gam(size_t(N) * C), gamd(size_t(N) * C);
  k.global_avg_pool2d_forward(gy.data(), x.data(), N, HW, C);
  r.global_avg_pool2d_forward(gyd.data(), xd.data(), N, HW, C);
  rep.compare(k.isa, "global_avg_pool2d_forward", gy, gyd, kSum, shape);
  k.global_avg_pool2d_backward(gdx.data(), gdy.data(), N, HW, C);
  r.global_avg_pool2d_backward(gdxd.data(), gdyd.data(), N, HW, C);
  rep.compare(k.isa, "global_avg_pool2d_backward", gdx, gdxd, kElem, shape);
  k.global_max_pool2d_forward(gy.data(), gam.data(), x.data(), N, HW, C);
  r.global_max_pool2d_forward(gyd.data(), gamd.data(), xd.data(), N, HW, C);
  rep.compare(k.isa, "global_max_pool2d_forward", gy, gyd, kElem, shape);
  k.global_max_pool2d_backward(gdx.data(), gdy.data(), gam.data(), N, HW, C, false);
  r.global_max_pool2d_backward(gdxd.data(), gdyd.data(), gamd.data(), N, HW, C, false);
  rep.compare(k.isa, "global_max_pool2d_backward", gdx, gdxd, kElem, shape);
}

void test_batchnorm(const F& k, const D& r, Rng& g, Report& rep, int threads) {
  const int64_t M = g.range(1, 300);
  const int C = g.range(1, 40);
  const bool relu = g.coin(), batch_stats = g.coin(), acc = g.coin();
  const std::string shape = fmt("M%lld C%d relu %d batch_stats %d accumulate %d", (long long)M, C, relu, batch_stats,
                                acc);
  const size_t n = size_t(M) * C;
  auto x = g.vec(n, -2.0f, 3.0f), dy = g.vec(n), gamma = g.vec(C, 0.5f, 1.5f), scale = g.vec(C), shift = g.vec(C);
  auto dx0 = g.vec(n);
  auto xd = dbl(x), dyd = dbl(dy), gammad = dbl(gamma), scaled = dbl(scale), shiftd = dbl(shift);
  std::vector<float> ws(size_t(k.batchnorm_workspace(M, C, threads)) + 1), mean(C), var(C), y(n);
  std::vector<double> wsd(size_t(r.batchnorm_workspace(M, C, threads)) + 1), meand(C), vard(C), yd(n);
  k.batchnorm_stats(mean.data(), var.data(), x.data(), M, C, ws.data());
  r.batchnorm_stats(meand.data(), vard.data(), xd.data(), M, C, wsd.data());
  rep.compare(k.isa, "batchnorm_stats(mean)", mean, meand, kSum, shape);
  rep.compare(k.isa, "batchnorm_stats(variance)", var, vard, kSum, shape);
  k.batchnorm_apply(y.data(), x.data(), scale.data(), shift.data(), nullptr, M, C, relu);
  r.batchnorm_apply(yd.data(), xd.data(), scaled.data(), shiftd.data(), nullptr, M, C, relu);
  rep.compare(k.isa, "batchnorm_apply", y, yd, kElem, shape);
  {  // with a residual summed in (BatchNormalization -> Add in one pass)
    auto res = g.vec(n);
    auto resd = dbl(res);
    std::vector<float> ya(n);
    std::vector<double> yad(n);
    k.batchnorm_apply(ya.data(), x.data(), scale.data(), shift.data(), res.data(), M, C, relu);
    r.batchnorm_apply(yad.data(), xd.data(), scaled.data(), shiftd.data(), resd.data(), M, C, relu);
    rep.compare(k.isa, "batchnorm_apply(residual)", ya, yad, kElem, shape);
  }
  // backward around the double statistics (both sides read the same mean and invstd)
  std::vector<float> mf(C), inv(C);
  std::vector<double> invd(C);
  for (int c = 0; c < C; ++c) {
    invd[c] = 1.0 / std::sqrt(vard[c] + 1e-3);
    mf[c] = float(meand[c]);
    inv[c] = float(invd[c]);
  }
  auto mfd = dbl(mf), invfd = dbl(inv), yfd = dbl(y);
  std::vector<float> dx = dx0, dg(C), dbeta(C);
  std::vector<double> dxd = dbl(dx0), dgd(C), dbd(C);
  k.batchnorm_backward(dx.data(), dg.data(), dbeta.data(), dy.data(), relu ? y.data() : nullptr, nullptr, nullptr, nullptr,
                       nullptr, false, x.data(), mf.data(), inv.data(), gamma.data(), M, C, batch_stats, ws.data(), acc);
  r.batchnorm_backward(dxd.data(), dgd.data(), dbd.data(), dyd.data(), relu ? yfd.data() : nullptr, nullptr, nullptr, nullptr,
                       nullptr, false, xd.data(), mfd.data(), invfd.data(), gammad.data(), M, C, batch_stats, wsd.data(), acc);
  rep.compare(k.isa, "batchnorm_backward", dx, dxd, kSum, shape);
  rep.compare(k.isa, "batchnorm_backward(gamma)", dg, dgd, kSum, shape);
  rep.compare(k.isa, "batchnorm_backward(beta)", dbeta, dbd, kSum, shape);
  if (relu) {
    // The ReLU's sign from x and the forward's scale and shift (the output not kept): the same
    // bits as from y, which that forward computed from the same map.
    std::vector<float> dx2 = dx0, dg2(C), db2(C);
    k.batchnorm_backward(dx2.data(), dg2.data(), db2.data(), dy.data(), nullptr, scale.data(), shift.data(), nullptr,
                         nullptr, false, x.data(), mf.data(), inv.data(), gamma.data(), M, C, batch_stats, ws.data(), acc);
    rep.compare(k.isa, "batchnorm_backward(relu from x)", dx2, dbl(dx), 0.0, shape);
    rep.compare(k.isa, "batchnorm_backward(relu from x, gamma)", dg2, dbl(dg), 0.0, shape);
  }
  {  // a residual added before the ReLU, and its gradient (BatchNormalization + Add in one node)
    auto res = g.vec(n);
    auto resd = dbl(res);
    std::vector<float> dx3 = dx0, dg3(C), db3(C), dres = dx0;
    std::vector<double> dx3d = dbl(dx0), dg3d(C), db3d(C), dresd = dbl(dx0);
    k.batchnorm_backward(dx3.data(), dg3.data(), db3.data(), dy.data(), nullptr, scale.data(), shift.data(), res.data(),
                         dres.data(), acc, x.data(), mf.data(), inv.data(), gamma.data(), M, C, batch_stats, ws.data(),
                         acc);
    r.batchnorm_backward(dx3d.data(), dg3d.data(), db3d.data(), dyd.data(), nullptr, scaled.data(), shiftd.data(),
                         resd.data(), dresd.data(), acc, xd.data(), mfd.data(), invfd.data(), gammad.data(), M, C,
                         batch_stats, wsd.data(), acc);
    rep.compare(k.isa, "batchnorm_backward(residual)", dx3, dx3d, kSum, shape);
    rep.compare(k.isa, "batchnorm_backward(residual, gamma)", dg3, dg3d, kSum, shape);
    rep.compare(k.isa, "batchnorm_backward(residual gradient)", dres, dresd, kElem, shape);
  }
}

void test_elementwise(const F& k, const D& r, Rng& g, Report& rep) {
  const int64_t n = g.range(1, 300);
  auto x = g.vec(size_t(n), -4.0f, 4.0f), dy = g.vec(static_cast<size_t>(n));
  auto xd = dbl(x), dyd = dbl(dy);
  for (int a = 0; a <= 12; ++a) {
    const Act act = Act(a);
    if (act == Act::softmax) continue;
    const float alpha = act == Act::relu_max ? 2.5f : 0.3f;
    const std::string shape = fmt("n%lld act %d", (long long)n, a);
    std::vector<float> y(static_cast<size_t>(n)), dx(static_cast<size_t>(n));
    std::vector<double> yd(static_cast<size_t>(n)), dxd(static_cast<size_t>(n));
    k.activation_forward(y.data(), x.data(), n, act, alpha);
    r.activation_forward(yd.data(), xd.data(), n, act, alpha);
    rep.compare(k.isa, "activation_forward", y, yd, 1e-5, shape);
    k.activation_backward(dx.data(), dy.data(), x.data(), y.data(), n, act, alpha);
    r.activation_backward(dxd.data(), dyd.data(), xd.data(), yd.data(), n, act, alpha);
    rep.compare(k.isa, "activation_backward", dx, dxd, 1e-5, shape);
  }
  // merges of k = 2..3 inputs, and their backward into each input
  const int kin = g.range(2, 3);
  std::vector<std::vector<float>> in;
  std::vector<std::vector<double>> ind;
  for (int i = 0; i < kin; ++i) in.push_back(g.vec(size_t(n))), ind.push_back(dbl(in.back()));
  std::vector<const float*> xs;
  std::vector<const double*> xsd;
  for (int i = 0; i < kin; ++i) xs.push_back(in[i].data()), xsd.push_back(ind[i].data());
  for (int op = 0; op <= 4; ++op) {
    const bool relu = op != int(MergeOp::maximum) && g.coin();
    const std::string shape = fmt("n%lld k%d op %d relu %d", (long long)n, kin, op, relu);
    std::vector<float> y(static_cast<size_t>(n));
    std::vector<double> yd(static_cast<size_t>(n));
    k.merge_forward(y.data(), xs.data(), kin, n, MergeOp(op), relu);
    r.merge_forward(yd.data(), xsd.data(), kin, n, MergeOp(op), relu);
    rep.compare(k.isa, "merge_forward", y, yd, kElem, shape);
    auto yfd = dbl(y);  // the backward masks by the forward's output: give both the same one
    for (int which = 0; which < kin; ++which) {
      std::vector<float> dx(static_cast<size_t>(n));
      std::vector<double> dxd(static_cast<size_t>(n));
      k.merge_backward(dx.data(), dy.data(), xs.data(), y.data(), kin, which, n, MergeOp(op), false, relu);
      r.merge_backward(dxd.data(), dyd.data(), xsd.data(), yfd.data(), kin, which, n, MergeOp(op), false, relu);
      rep.compare(k.isa, "merge_backward", dx, dxd, kElem, shape);
    }
  }
}

void test_rows(const F& k, const D& r, Rng& g, Report& rep) {
  const int N = g.range(1, 20), K = g.range(1, 40);
  const std::string shape = fmt("N%d K%d", N, K);
  const size_t n = size_t(N) * K;
  auto x = g.vec(n, -5.0f, 5.0f), dy = g.vec(n);
  auto xd = dbl(x), dyd = dbl(dy);
  std::vector<float> y(n), dx(n);
  std::vector<double> yd(n), dxd(n);
  k.softmax_forward(y.data(), x.data(), N, K);
  r.softmax_forward(yd.data(), xd.data(), N, K);
  rep.compare(k.isa, "softmax_forward", y, yd, kElem, shape);
  k.softmax_backward(dx.data(), dy.data(), y.data(), N, K);
  r.softmax_backward(dxd.data(), dyd.data(), dbl(y).data(), N, K);
  rep.compare(k.isa, "softmax_backward", dx, dxd, kSum, shape);
  // layer normalisation over rows of K
  auto gam = g.vec(K), bet = g.vec(K);
  auto gamd = dbl(gam), betd = dbl(bet);
  std::vector<float> mean(N), inv(N), dg(K), db(K);
  std::vector<double> meand(N), invd(N), dgd(K), dbd(K);
  k.layernorm_forward(y.data(), mean.data(), inv.data(), x.data(), gam.data(), bet.data(), N, K, 1e-3);
  r.layernorm_forward(yd.data(), meand.data(), invd.data(), xd.data(), gamd.data(), betd.data(), N, K, 1e-3);
  rep.compare(k.isa, "layernorm_forward", y, yd, kSum, shape);
  k.layernorm_backward(dx.data(), dg.data(), db.data(), dy.data(), x.data(), mean.data(), inv.data(), gam.data(), N, K,
                       false);
  r.layernorm_backward(dxd.data(), dgd.data(), dbd.data(), dyd.data(), xd.data(), meand.data(), invd.data(),
                       gamd.data(), N, K, false);
  rep.compare(k.isa, "layernorm_backward", dx, dxd, kSum, shape);
  rep.compare(k.isa, "layernorm_backward(gamma)", dg, dgd, kSum, shape);
  // concatenation into a wider row
  const int Ctot = K + g.range(0, 9), off = g.range(0, Ctot - K);
  std::vector<float> wide(size_t(N) * Ctot, 0.0f);
  std::vector<double> wided(size_t(N) * Ctot, 0.0);
  k.concat_forward(wide.data(), x.data(), N, K, Ctot, off);
  r.concat_forward(wided.data(), xd.data(), N, K, Ctot, off);
  rep.compare(k.isa, "concat_forward", wide, wided, kElem, shape);
  k.concat_backward(dx.data(), wide.data(), N, K, Ctot, off, false);
  r.concat_backward(dxd.data(), wided.data(), N, K, Ctot, off, false);
  rep.compare(k.isa, "concat_backward", dx, dxd, kElem, shape);
  // losses with their gradients
  std::vector<float> t(n, 0.0f);
  for (int i = 0; i < N; ++i) t[size_t(i) * K + g.range(0, K - 1)] = 1.0f;
  auto td = dbl(t);
  k.softmax_forward(y.data(), x.data(), N, K);
  for (LossKind kind : {LossKind::mse, LossKind::cce, LossKind::softmax_ce, LossKind::bce_logits, LossKind::huber,
                        LossKind::mae, LossKind::log_cosh}) {
    LossParams lp{kind, 1e-7};
    const float* pred = kind == LossKind::cce ? y.data() : x.data();
    auto predd = dbl(std::vector<float>(pred, pred + n));
    const double l = k.loss(dx.data(), pred, t.data(), N, K, lp);
    const double ld = r.loss(dxd.data(), predd.data(), td.data(), N, K, lp);
    const std::string s = shape + fmt(" loss %d", int(kind));
    const float lf = float(l);
    rep.compare(k.isa, "loss", &lf, &ld, 1, kSum, s);
    rep.compare(k.isa, "loss(gradient)", dx, dxd, kSum, s);
  }
}

void test_updates_and_stats(const F& k, const D& r, Rng& g, Report& rep) {
  const int64_t n = g.range(1, 5000);
  const std::string shape = fmt("n%lld", (long long)n);
  auto p = g.vec(static_cast<size_t>(n)), m = g.vec(size_t(n), 0.0f, 0.1f), v = g.vec(size_t(n), 0.0f, 0.1f);
  auto pd = dbl(p), md = dbl(m), vd = dbl(v);
  for (int step = 1; step <= 3; ++step) {
    auto grad = g.vec(static_cast<size_t>(n));
    auto gd = dbl(grad);
    AdamParams h{1e-2, 0.9, 0.999, 1e-7, step == 2 ? 0.01 : 0.0, step};
    k.adam_update(p.data(), grad.data(), m.data(), v.data(), n, h);
    r.adam_update(pd.data(), gd.data(), md.data(), vd.data(), n, h);
    // SGD with Nesterov momentum into the same buffers after the Adam step
    SgdParams s{0.05, 0.9, 1e-4, true, 0.0};
    k.sgd_update(p.data(), grad.data(), m.data(), n, s);
    r.sgd_update(pd.data(), gd.data(), md.data(), n, s);
  }
  rep.compare(k.isa, "adam_update+sgd_update", p, pd, kElem, shape);
  rep.compare(k.isa, "adam_update+sgd_update(momentum)", m, md, kElem, shape);
  double st[6], std_[6];
  auto y = g.vec(size_t(n), -1.2f, 1.2f);
  for (int64_t i = 0; i < n; i += 3) y[size_t(i)] = 0.0f;  // exact zeros are counted
  auto yd = dbl(y);
  k.tensor_stats(st, y.data(), n);
  r.tensor_stats(std_, yd.data(), n);
  float stf[6];
  for (int i = 0; i < 6; ++i) stf[i] = float(st[i]);
  rep.compare(k.isa, "tensor_stats", stf, std_, 6, kSum, shape);
  double pn[3], pnd[3];
  k.param_norms(pn, p.data(), m.data(), v.data(), n);
  r.param_norms(pnd, pd.data(), md.data(), dbl(v).data(), n);
  float pnf[3] = {float(pn[0]), float(pn[1]), float(pn[2])};
  rep.compare(k.isa, "param_norms", pnf, pnd, 3, kSum, shape);
  // dropout draws the same mask from the same counter-based stream on every path
  std::vector<float> dy(static_cast<size_t>(n)), mask(static_cast<size_t>(n));
  std::vector<double> dyd(static_cast<size_t>(n)), maskd(static_cast<size_t>(n));
  k.dropout_forward(dy.data(), mask.data(), y.data(), n, 0.3, 1234, 7);
  r.dropout_forward(dyd.data(), maskd.data(), yd.data(), n, 0.3, 1234, 7);
  rep.compare(k.isa, "dropout_forward", dy, dyd, kElem, shape);
  rep.compare(k.isa, "dropout_forward(mask)", mask, maskd, kElem, shape);
}

// Denormals flush inside cnnbp's parallel work (FTZ/DAZ, or FPCR.FZ), and the caller's whole
// floating-point state, status flags included, is what it was after a kernel and a ThreadScope.
void test_fp_state(Report& rep) {
  volatile float third = 1.0f;
  third = third / 3.0f;  // raises the inexact flag in the caller's state
  const FpState before = fp_state();
  volatile float tiny = 1e-39f;  // subnormal
  std::vector<float> out(64, -1.0f);
  std::vector<int> flushed(64, 0);
  parallel_for(64, 1, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) {
      out[size_t(i)] = tiny * 0.5f;  // 0 when flushed (inputs or outputs)
      flushed[size_t(i)] = (fp_state() & kFlushDenormals) == kFlushDenormals;
    }
  });
  {
    ThreadScope scope(2);
    std::vector<float> a(16, 1e-39f), y(16);
    kernels_f32().activation_forward(y.data(), a.data(), 16, Act::relu, 0.0f);
  }
  const FpState after = fp_state();
  ++rep.checks;
  const bool all_flushed = std::all_of(flushed.begin(), flushed.end(), [](int f) { return f == 1; });
  const bool zeros = kFlushDenormals == 0 || std::all_of(out.begin(), out.end(), [](float v) { return v == 0.0f; });
  if (before != after || !all_flushed || !zeros) {
    ++rep.failures;
    std::printf("FAIL floating-point state: before %#llx after %#llx, flush bits set in every thread %d, "
                "subnormal products flushed %d\n", (unsigned long long)before, (unsigned long long)after,
                all_flushed, zeros);
  } else {
    std::printf("%-16s floating-point state: flush on inside (bits %#llx), caller's state %#llx restored\n", "",
                (unsigned long long)kFlushDenormals, (unsigned long long)after);
  }
}

// Buffers: 64-byte aligned; from 4 MiB mapped on a 2 MiB boundary (transparent huge pages can
// back them whole), every byte writable, and growing or dropping one unmaps it cleanly.
void test_buffers(Report& rep) {
  int bad = 0;
  for (size_t n : {size_t(1000), size_t(300) << 10, (size_t(4) << 20) - 64, size_t(4) << 20,
                   (size_t(5) << 20) + 12345, size_t(33) << 20}) {
    Buffer<char> b(n);
    const auto at = reinterpret_cast<std::uintptr_t>(b.data());
    const std::uintptr_t align = n >= (size_t(4) << 20) ? (std::uintptr_t(2) << 20) : kAlign;
    std::memset(b.data(), 1, n);
    if (at % align || b.capacity() != n || b.data()[n - 1] != 1) {
      ++bad;
      std::printf("FAIL buffer of %zu bytes at %#llx (want a multiple of %#llx)\n", n, (unsigned long long)at,
                  (unsigned long long)align);
    }
    b.reserve(n + (size_t(2) << 20));  // grows: the old mapping is released
    b.data()[n] = 2;
  }
  ++rep.checks;
  if (bad) ++rep.failures;
  else std::printf("%-16s buffers: aligned (2 MiB from 4 MiB), writable, released\n", "");
}

// The thread pool: every item of a region is run exactly once, by a thread whose index is below the
// region's thread count, over contiguous ranges; with up to 32 chunks (claimed by bit) and more
// (claimed by counter); nested regions (run inline), regions from two caller threads at once, and
// a region whose chunks wait for each other (each must get a thread of its own).
void test_pool(Report& rep) {
  int bad = 0, checks = 0;
  auto region = [&](int64_t n, int threads) {
    ThreadScope scope(threads);
    std::unique_ptr<std::atomic<int>[]> hits(new std::atomic<int>[size_t(n)]);
    for (int64_t i = 0; i < n; ++i) hits[size_t(i)] = 0;
    std::atomic<int> wrong{0};
    const int nt = threads_for(n, 1);
    parallel_for(n, 1, [&](int64_t b, int64_t e, int tid) {
      if (b >= e || tid < 0 || tid >= nt) ++wrong;
      for (int64_t i = b; i < e; ++i) ++hits[size_t(i)];
      // nested: runs inline on this thread, over its whole range
      int64_t inner = 0;
      parallel_for(e - b, 1, [&](int64_t b2, int64_t e2, int) { inner += e2 - b2; });
      if (inner != e - b) ++wrong;
    });
    ++checks;
    bool once = true;
    for (int64_t i = 0; i < n; ++i) once = once && hits[size_t(i)] == 1;
    if (!once || wrong) {
      ++bad;
      std::printf("FAIL thread pool: n %lld, %d threads: every item once %d, bad ranges or nesting %d\n",
                  (long long)n, threads, once, wrong.load());
    }
  };
  for (int threads : {2, 3, 5, 8, 33, 40})
    for (int64_t n : {1, 2, 3, 7, 31, 32, 33, 100, 1000}) region(n, threads);
  std::vector<std::thread> callers;
  for (int c = 0; c < 2; ++c)
    callers.emplace_back([&, c] {
      for (int it = 0; it < 200; ++it) region(1 + (it * 7 + c) % 97, 2 + it % 4);
    });
  for (auto& t : callers) t.join();
  for (int threads : {2, 3, 4}) {
    ++checks;
    if (threads_in_region(threads) != threads) {
      ++bad;
      std::printf("FAIL thread pool: a region of %d waiting chunks ran on fewer threads\n", threads);
    }
  }
  rep.checks += checks;
  rep.failures += bad;
  std::printf("%-16s thread pool: %d regions checked, %d failed\n", "", checks, bad);
}

void run_path(const char* label, const F& k, const D& r, int trials, uint64_t seed, int threads, Report& rep) {
  Rng g(seed);
  const int before = rep.failures, checks = rep.checks;
  for (int t = 0; t < trials; ++t) {
    test_conv2d(k, r, g, rep, threads);
    test_winograd(k, r, g, rep, threads);
    test_grouped_conv2d(k, r, g, rep);
    test_dense(k, r, g, rep);
    test_pool2d(k, r, g, rep);
    test_batchnorm(k, r, g, rep, threads);
    test_elementwise(k, r, g, rep);
    test_rows(k, r, g, rep);
    test_updates_and_stats(k, r, g, rep);
  }
  std::printf("%-16s %6d comparisons, %d failed\n", label, rep.checks - checks, rep.failures - before);
}

// A mixed-precision table: its conv2d and dense kernels against the reference on bf16-rounded
// operands (the rest of the table is the fp32 path's, tested above).
void run_bf16(const F& k, const D& r, int trials, uint64_t seed, int threads, Report& rep) {
  Rng g(seed);
  const int before = rep.failures, checks = rep.checks;
  for (int t = 0; t < trials; ++t) {
    test_conv2d(k, r, g, rep, threads, true);
    test_dense(k, r, g, rep, true);
  }
  std::printf("%-16s %6d comparisons, %d failed\n", k.isa, rep.checks - checks, rep.failures - before);
}

}  // namespace

int main(int argc, char** argv) {
  int trials = 20, threads = get_num_threads();
  uint64_t seed = 1;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--trials") && i + 1 < argc) trials = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--seed") && i + 1 < argc) seed = std::strtoull(argv[++i], nullptr, 10);
    else {
      std::fprintf(stderr, "usage: %s [--trials N] [--threads N] [--seed N]\n", argv[0]);
      return 2;
    }
  }
  set_num_threads(threads);
  ThreadScope pin(threads);
  const CpuCapability best = detected_capability();
  std::printf("cnnbp kernel self-test: CPU supports %s, %d threads, %d trials per kernel family, seed %llu\n",
              capability_name(best), threads, trials, (unsigned long long)seed);
  const D& ref = kernels_f64();
  Report rep;
  test_fp_state(rep);
#ifndef CNNBP_NO_THREADS
  test_pool(rep);
  test_buffers(rep);
#endif
  for (int c = 0; c < kNumCapabilities; ++c) {
    const CpuCapability cap = CpuCapability(c);
    if (!compiled_capability(cap)) continue;
    const bool runs = cap == CpuCapability::baseline || cap == best ||
                      (cap == CpuCapability::avx2 && best == CpuCapability::avx512);
    if (!runs) {
      std::printf("%-16s skipped: this CPU lacks it\n", capability_name(cap));
      continue;
    }
    run_path(capability_name(cap), kernels_f32_for(cap), ref, trials, seed, threads, rep);
#ifdef CNNBP_HAVE_AVX2
    if (cap == CpuCapability::avx2)
      run_path("avx2-wide", *isa_avx2::table_f32_wide(), ref, trials, seed, threads, rep);
#endif
  }
  run_bf16(kernels_bf16_for(Bf16Path::emulated), ref, trials, seed, threads, rep);
  if (bf16_detected() == Bf16Path::avx512_bf16)
    run_bf16(kernels_bf16_for(Bf16Path::avx512_bf16), ref, trials, seed, threads, rep);
  else
    std::printf("%-16s skipped: %s\n", "avx512_bf16", bf16_compiled() ? "this CPU lacks it" : "not in this build");
  std::printf("%d comparisons, %d failed\n", rep.checks, rep.failures);
  return rep.failures ? 1 : 0;
}
