// Native benchmark: times each conv pass of the reference shapes and whole training steps of the
// reference models, without Python, and prints GFLOP/s beside the measured FMA peak (and, for the
// mixed_bfloat16 kernels, the measured vdpbf16ps peak where the CPU has it). This is the
// binary to profile (perf record, valgrind --tool=callgrind).
//
//   cmake -S . -B build/bench -DCNNBP_BUILD_BENCH=ON [-Dpybind11_DIR=...] && cmake --build build/bench
//   build/bench/cnnbp_bench [threads] [--steps N] [--model NAME] [--batch N] [--quick] [--once] [--batchnorm]
//                           [--conv TEXT]
//
// --quick: small shapes (batch 2 for the convolutions, 8 for the models) and short timings, for a
// run under an emulator; --once: every measured call runs exactly once, untimed repetitions off
// (instruction counting: the same binary, path and arguments always execute the same work);
// --batchnorm: the BatchNormalization passes only.
// --conv TEXT: the float convolution passes of the shapes whose name contains TEXT, only (perf).
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/cpu.h"
#include "core/parallel.h"
#include "kernels/bf16.h"
#include "kernels/kernels.h"
#include "nn/network.h"

using namespace cnnbp;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

bool g_quick = false, g_once = false;
const char* g_conv = nullptr;  // --conv TEXT: the float convolution rows whose name contains TEXT, only

// Median seconds per call over 5 timed batches after a warm-up (--once: one untimed-free call).
double time_it(const std::function<void()>& f, double min_time = 0.2) {
  if (g_once) {
    const double t = now();
    f();
    return now() - t;
  }
  if (g_quick) min_time = 0.01;
  f();
  int n = 1;
  for (;;) {
    double t = now();
    for (int i = 0; i < n; ++i) f();
    if (now() - t > min_time / 5) break;
    n *= 2;
  }
  std::vector<double> v;
  for (int r = 0; r < 5; ++r) {
    double t = now();
    for (int i = 0; i < n; ++i) f();
    v.push_back((now() - t) / n);
  }
  std::sort(v.begin(), v.end());
  return v[2];
}

// Twelve (sixteen) independent FMA chains in named registers: enough to cover FMA latency on
// two pipes. The empty asm keeps the compiler from folding the chains.
#define CNNBP_CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

#if defined(__x86_64__) || defined(_M_X64)
__attribute__((target("avx2,fma"))) double fma_peak_avx2(long n) {
#define DECL(i) __m256 a##i = _mm256_set1_ps(1.0f + i);
#define STEP(i) a##i = _mm256_fmadd_ps(a##i, b, c);
#define KEEP(i) __asm__ volatile("" : "+x"(a##i));
  CNNBP_CHAINS(DECL)
  const __m256 b = _mm256_set1_ps(0.9999f), c = _mm256_set1_ps(1e-4f);
  double t = now();
  for (long it = 0; it < n; ++it) {
    CNNBP_CHAINS(STEP)
    CNNBP_CHAINS(KEEP)
  }
  return n * 12.0 * 16.0 / (now() - t) / 1e9;
#undef DECL
#undef STEP
#undef KEEP
}

__attribute__((target("avx512f"))) double fma_peak_avx512(long n) {
#define DECL(i) __m512 a##i = _mm512_set1_ps(1.0f + i);
#define STEP(i) a##i = _mm512_fmadd_ps(a##i, b, c);
#define KEEP(i) __asm__ volatile("" : "+v"(a##i));
  CNNBP_CHAINS(DECL)
  const __m512 b = _mm512_set1_ps(0.9999f), c = _mm512_set1_ps(1e-4f);
  double t = now();
  for (long it = 0; it < n; ++it) {
    CNNBP_CHAINS(STEP)
    CNNBP_CHAINS(KEEP)
  }
  return n * 12.0 * 32.0 / (now() - t) / 1e9;
#undef DECL
#undef STEP
#undef KEEP
}

// vdpbf16ps chains: each instruction adds 16 lanes x 2 bf16 products (64 flops).
__attribute__((target("avx512f,avx512bf16"))) double bf16_peak_avx512(long n) {
#define DECL(i) __m512 a##i = _mm512_set1_ps(1.0f + i);
#define STEP(i) a##i = _mm512_dpbf16_ps(a##i, b, c);
#define KEEP(i) __asm__ volatile("" : "+v"(a##i));
  CNNBP_CHAINS(DECL)
  const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0.9999f), _mm512_set1_ps(0.9999f));
  const __m512bh c = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-4f), _mm512_set1_ps(1e-4f));
  double t = now();
  for (long it = 0; it < n; ++it) {
    CNNBP_CHAINS(STEP)
    CNNBP_CHAINS(KEEP)
  }
  return n * 12.0 * 64.0 / (now() - t) / 1e9;
#undef DECL
#undef STEP
#undef KEEP
}

#endif

#if defined(__aarch64__)
// Vector-extension FMA chains: the compiler emits fmla on q registers (4 floats).
double fma_peak_neon(long n) {
  typedef float v4 __attribute__((vector_size(16)));
#define DECL(i) v4 a##i = {1.0f + i, 1.0f + i, 1.0f + i, 1.0f + i};
#define STEP(i) a##i = a##i * b + c;
#define KEEP(i) __asm__ volatile("" : "+w"(a##i));
  CNNBP_CHAINS(DECL)
  const v4 b = {0.9999f, 0.9999f, 0.9999f, 0.9999f}, c = {1e-4f, 1e-4f, 1e-4f, 1e-4f};
  double t = now();
  for (long it = 0; it < n; ++it) {
    CNNBP_CHAINS(STEP)
    CNNBP_CHAINS(KEEP)
  }
  return n * 12.0 * 8.0 / (now() - t) / 1e9;
#undef DECL
#undef STEP
#undef KEEP
}
#endif

// Runs f on `threads` threads at once (std::thread: every one on its own, whatever the pool
// does with its chunks) and returns the sum of their results.
double on_threads(int threads, const std::function<double()>& f) {
  std::vector<double> r(size_t(threads > 1 ? threads : 1), 0.0);
  std::vector<std::thread> ts;
  for (int t = 1; t < threads; ++t) ts.emplace_back([&, t] { r[size_t(t)] = f(); });
  r[0] = f();
  for (auto& t : ts) t.join();
  double total = 0.0;
  for (double v : r) total += v;
  return total;
}

long peak_iters() {
  long iters = 50000000;
  if (const char* s = std::getenv("CNNBP_BENCH_PEAK_ITERS")) iters = std::atol(s);
  return iters;
}

// FMA peak of all threads together (GFLOP/s) for the capability in use (0: baseline).
// CNNBP_BENCH_PEAK_ITERS sets the loop length (short runs under an emulator).
double fma_peak(int threads) {
  const CpuCapability c = cpu_capability();
  const long iters = peak_iters();
  if (c == CpuCapability::baseline || iters <= 0) return 0.0;
  return on_threads(threads, [&] {
#if defined(__x86_64__) || defined(_M_X64)
    return c == CpuCapability::avx512 ? fma_peak_avx512(iters) : fma_peak_avx2(iters);
#elif defined(__aarch64__)
    return fma_peak_neon(iters);
#else
    return 0.0;
#endif
  });
}

// vdpbf16ps peak of all threads together (GFLOP/s; 0 without the bf16 kernels).
double bf16_peak(int threads) {
#if defined(__x86_64__) || defined(_M_X64)
  const long iters = peak_iters();
  if (bf16_path() != Bf16Path::avx512_bf16 || iters <= 0) return 0.0;
  return on_threads(threads, [&] { return bf16_peak_avx512(iters); });
#else
  (void)threads;
  return 0.0;
#endif
}

std::vector<float> randn(size_t n, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d;
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

struct ConvShape {
  const char* name;
  int N, H, W, C, K, k, pad, stride;
};

void bench_convs(const KernelTable<float>& k, int threads, double peak, const char* peak_name) {
  const ConvShape shapes[] = {
      {"3->32 32x32 3x3", 64, 32, 32, 3, 32, 3, 0, 1},   {"32->32 32x32 3x3", 64, 32, 32, 32, 32, 3, 1, 1},
      {"32->64 16x16 3x3", 64, 16, 16, 32, 64, 3, 1, 1}, {"64->128 8x8 3x3", 64, 8, 8, 64, 128, 3, 1, 1},
      {"1->6 28x28 5x5", 64, 28, 28, 1, 6, 5, 2, 1},     {"6->16 14x14 5x5", 64, 14, 14, 6, 16, 5, 0, 1},
      // ResNet-20 (batch 128): the three stages' 3x3 layers and the strided ones between them
      {"r20 16->16 32x32", 128, 32, 32, 16, 16, 3, 1, 1}, {"r20 16->32 s2", 128, 32, 32, 16, 32, 3, 1, 2},
      {"r20 32->32 16x16", 128, 16, 16, 32, 32, 3, 1, 1}, {"r20 64->64 8x8", 128, 8, 8, 64, 64, 3, 1, 1},
      // the VGG net's other 3x3 layers
      {"64->64 16x16 3x3", 64, 16, 16, 64, 64, 3, 1, 1}, {"128->128 8x8 3x3", 64, 8, 8, 128, 128, 3, 1, 1},
  };
  std::printf("\nconvolution passes, %s, %d threads: GFLOP/s (%% of %s peak); Winograd rows count the direct\n"
              "algorithm's multiply-adds (effective GFLOP/s: above 100 %% of peak means fewer multiplications)\n",
              k.isa, threads, peak_name);
  std::printf("%-18s %-9s %16s %16s %16s\n", "shape", "algorithm", "forward", "backward-data", "backward-weight");
  for (const auto& s : shapes) {
    if (g_conv && !std::strstr(s.name, g_conv)) continue;
    Conv2dParams p = make_conv2d_params("bench", g_quick ? 2 : s.N, s.H, s.W, s.C, s.K, s.k, s.k, s.stride, s.stride, 1, 1, s.pad,
                                        s.pad, s.pad, s.pad);
    auto x = randn(size_t(p.N) * p.H * p.W * p.C, 1), w = randn(size_t(p.R) * p.S * p.C * p.K, 2);
    auto dy = randn(size_t(p.N) * p.P * p.Q * p.K, 3), b = randn(size_t(p.K), 4);
    std::vector<float> y(dy.size()), dx(x.size()), dw(w.size()), db(b.size());
    const double flop = 2.0 * p.N * p.P * p.Q * p.K * p.C * p.R * p.S;
    for (int algo : {int(kConvDirect), int(kConvWinograd2), int(kConvWinograd4)}) {
      p.algo = algo;
      if (algo != kConvDirect && k.conv2d_algorithm(p, 0) != algo) continue;  // not a Winograd shape (or table)
      std::vector<float> ws(size_t(k.conv2d_workspace(p, threads)));
      double g[3] = {
          flop / time_it([&] { k.conv2d_forward(y.data(), x.data(), w.data(), b.data(), ws.data(), p); }) / 1e9,
          flop / time_it([&] { k.conv2d_backward_data(dx.data(), dy.data(), w.data(), ws.data(), p, false); }) / 1e9,
          flop / time_it([&] { k.conv2d_backward_weight(dw.data(), db.data(), dy.data(), x.data(), ws.data(), p); }) / 1e9};
      std::printf("%-18s %-9s", algo == kConvDirect ? s.name : "",
                  algo == kConvDirect ? "direct" : algo == kConvWinograd2 ? "wino F2" : "wino F4");
      for (double v : g) std::printf("  %7.1f (%4.0f%%)", v, peak > 0 ? 100.0 * v / peak : 0.0);
      std::printf("\n");
    }
  }
}

// BatchNormalization's passes on ResNet-20's three stages (batch 128, channels-last rows of C):
// milliseconds per call and the GB/s of the tensors each pass reads and writes (repeated calls:
// a tensor that fits in the caches is read from them).
void bench_batchnorm(const KernelTable<float>& k, int threads) {
  std::printf("\nBatchNormalization passes, %s, %d threads: ms per call (GB/s of tensor traffic)\n", k.isa, threads);
  std::printf("%-16s %15s %15s %15s %15s %15s\n", "rows x channels", "statistics", "apply+ReLU", "apply+add+ReLU",
              "backward+ReLU", "backward+add");
  const int N = g_quick ? 2 : 128;
  for (int st = 0; st < 3; ++st) {
    const int C = 16 << st;
    const int64_t M = int64_t(N) * (32 >> st) * (32 >> st);
    const size_t n = size_t(M) * size_t(C);
    const size_t c = static_cast<size_t>(C);
    auto x = randn(n, 1), dy = randn(n, 2), add = randn(n, 3), sc = randn(c, 4), sh = randn(c, 5);
    std::vector<float> y(n), dx(n), dres(n), mean(c), var(c), inv(c, 1.0f), dg(c), db(c),
        ws(static_cast<size_t>(k.batchnorm_workspace(M, C, threads)));
    const double t[5] = {
        time_it([&] { k.batchnorm_stats(mean.data(), var.data(), x.data(), M, C, ws.data()); }),
        time_it([&] { k.batchnorm_apply(y.data(), x.data(), sc.data(), sh.data(), nullptr, M, C, true); }),
        time_it([&] { k.batchnorm_apply(y.data(), x.data(), sc.data(), sh.data(), add.data(), M, C, true); }),
        time_it([&] {
          k.batchnorm_backward(dx.data(), dg.data(), db.data(), dy.data(), nullptr, sc.data(), sh.data(), nullptr,
                               nullptr, false, x.data(), mean.data(), inv.data(), sc.data(), M, C, true, ws.data(), false);
        }),
        time_it([&] {
          k.batchnorm_backward(dx.data(), dg.data(), db.data(), dy.data(), nullptr, sc.data(), sh.data(), add.data(),
                               dres.data(), false, x.data(), mean.data(), inv.data(), sc.data(), M, C, true, ws.data(),
                               false);
        })};
    // tensors read or written per pass: x; x, y; x, add, y; x, dy twice and dx; x, dy, add twice, dx, dres
    const double tensors[5] = {1, 2, 3, 5, 8};
    char shape[32];
    std::snprintf(shape, sizeof(shape), "%lld x %d", (long long)M, C);
    std::printf("%-16s", shape);
    for (int i = 0; i < 5; ++i) std::printf("  %6.3f (%5.1f)", t[i] * 1e3, tensors[i] * double(n) * 4 / t[i] / 1e9);
    std::printf("\n");
  }
}

void add_conv(Network<float>& net, const char* name, int filters, int k, int pad, PadMode mode) {
  Conv2dConfig c;
  c.filters = filters;
  c.kh = c.kw = k;
  c.pad = mode;
  c.pt = c.pb = c.pl = c.pr = pad;
  c.act = Act::relu;
  net.add(make_conv2d<float>(name, net.output_shape(), c));
}
void add_pool(Network<float>& net, const char* name) {
  Pool2dConfig c;
  net.add(make_pool2d<float>(name, net.output_shape(), c));
}

void build(Network<float>& net, const std::string& model) {
  if (model == "seed") {
    add_conv(net, "conv", 32, 3, 0, PadMode::valid);
    add_pool(net, "pool");
  } else if (model == "lenet") {
    add_conv(net, "conv1", 6, 5, 2, PadMode::explicit_);
    add_pool(net, "pool1");
    add_conv(net, "conv2", 16, 5, 0, PadMode::valid);
    add_pool(net, "pool2");
  } else {
    const int f[] = {32, 64, 128};
    for (int i = 0; i < 3; ++i) {
      add_conv(net, "conv_a", f[i], 3, 0, PadMode::same);
      add_conv(net, "conv_b", f[i], 3, 0, PadMode::same);
      add_pool(net, "pool");
    }
  }
  net.add(make_flatten<float>("flatten", net.output_shape()));
  if (model == "lenet") {
    net.add(make_dense<float>("fc1", net.output_shape(), 120, true, "glorot_uniform", "zeros", Act::relu, 0.0));
    net.add(make_dense<float>("fc2", net.output_shape(), 84, true, "glorot_uniform", "zeros", Act::relu, 0.0));
  } else if (model == "vgg") {
    net.add(make_dense<float>("fc1", net.output_shape(), 256, true, "glorot_uniform", "zeros", Act::relu, 0.0));
  }
  net.add(make_dense<float>("logits", net.output_shape(), 10, true, "glorot_uniform", "zeros"));
  net.add(make_activation<float>("softmax", net.output_shape(), Act::softmax, 0.0));
  net.finalize(0);
  net.set_loss(LossKind::cce, 1e-7, true);
  OptimizerConfig o;
  if (model == "lenet") {
    o.kind = OptKind::sgd;
    o.lr = 0.01;
    o.momentum = 0.9;
  } else {
    o.kind = OptKind::adam;
    o.lr = 1e-3;
  }
  net.set_optimizer(o);
}

void bench_steps(int threads, int steps, const std::string& only, int batch_only) {
  std::printf("\ntraining steps (forward + loss + backward + update), %d threads\n", threads);
  std::printf("%-6s %6s %12s %10s\n", "model", "batch", "img/s", "ms/step");
  struct M { const char* name; Shape in; int batch; };
  const M models[] = {{"seed", {32, 32, 3}, 32}, {"lenet", {28, 28, 1}, 64}, {"vgg", {32, 32, 3}, 64}};
  for (const auto& m : models) {
    if (!only.empty() && only != m.name) continue;
    if (only.empty() && g_quick && std::string(m.name) == "vgg") continue;  // seconds per step emulated
    std::vector<int> batches = {m.batch, 128};
    if (batch_only > 0) batches = {batch_only};
    else if (g_quick) batches = {8};
    for (int batch : batches) {
      Network<float> net(m.in);
      build(net, m.name);
      const int64_t in = shape_numel(m.in);
      auto x = randn(size_t(batch) * in, 5);
      std::vector<float> y(size_t(batch) * 10, 0.0f);
      for (int n = 0; n < batch; ++n) y[size_t(n) * 10 + n % 10] = 1.0f;
      const int reps = std::string(m.name) == "vgg" && !g_once ? std::max(3, steps / 20) : steps;
      const double t = time_it([&] { for (int i = 0; i < reps; ++i) net.train_step(x.data(), y.data(), batch); }) / reps;
      std::printf("%-6s %6d %12.0f %10.3f\n", m.name, batch, batch / t, t * 1e3);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  int threads = get_num_threads(), steps = 20, batch = 0;
  std::string only;  // --model NAME: that model's training steps only (for callgrind A/B runs)
  bool bn_only = false;  // --batchnorm: BatchNormalization's passes only
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--steps") && i + 1 < argc) steps = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--model") && i + 1 < argc) only = argv[++i];
    else if (!std::strcmp(argv[i], "--batch") && i + 1 < argc) batch = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--quick")) g_quick = true;
    else if (!std::strcmp(argv[i], "--once")) g_once = true;
    else if (!std::strcmp(argv[i], "--batchnorm")) bn_only = true;
    else if (!std::strcmp(argv[i], "--conv") && i + 1 < argc) g_conv = argv[++i];
    else threads = std::atoi(argv[i]);
  }
  if (g_quick && !std::getenv("CNNBP_BENCH_PEAK_ITERS")) setenv("CNNBP_BENCH_PEAK_ITERS", "200000", 1);
  set_num_threads(threads);
  const double peak = fma_peak(threads), bpeak = bf16_peak(threads);
  std::printf("cnnbp native benchmark: %s kernels (CPU supports %s), %d threads, FMA peak %.0f GFLOP/s",
              capability_name(cpu_capability()), capability_name(detected_capability()), threads, peak);
  if (bpeak > 0) std::printf(", bf16 dot-product (vdpbf16ps) peak %.0f GFLOP/s", bpeak);
  std::printf("\n");
  if (g_conv) {
    bench_convs(kernels_f32(), threads, peak, "FMA");
    return 0;
  }
  if (bn_only) {
    bench_batchnorm(kernels_f32(), threads);
    return 0;
  }
  if (only.empty()) {
    bench_convs(kernels_f32(), threads, peak, "FMA");
    bench_batchnorm(kernels_f32(), threads);
    // the mixed_bfloat16 kernels: against the bf16 peak where the CPU has it, else the FMA one
    bench_convs(kernels_bf16(), threads, bpeak > 0 ? bpeak : peak, bpeak > 0 ? "bf16" : "FMA");
  }
  bench_steps(threads, steps, only, batch);
  return 0;
}
