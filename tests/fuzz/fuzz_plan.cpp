// Coverage-guided fuzzing (libFuzzer, clang, AddressSanitizer + UndefinedBehaviorSanitizer) of
// the C++ core below the bindings, where Python's own checks no longer filter the input:
//
//  - kernel parameter checks: make_conv2d_params / make_pool2d_params / same_padding on sizes
//    drawn from small values and the edges of 32-bit arithmetic; a shape they accept that is
//    small enough is then run through every kernel path this CPU has (forward, backward-data
//    with and without accumulation, weight gradient; 1 and 2 threads) on small-integer data, where
//    every sum is exact in float32: each path must equal the baseline path bit for bit
//    (differential fuzzing: an out-of-bounds read shows as an ASan report, a wrong index as a
//    mismatch);
//  - layer construction and planning: make_layer for every registered kind with random options
//    (as the Python specs never send them), wired into a random graph, then plan_bytes for edge
//    batch sizes, finalize, and for small models a training step and a prediction.
//
// A clean refusal is std::invalid_argument, std::out_of_range, std::bad_alloc (the memory budget,
// capped by CNNBP_MAX_MEMORY=256M here) or NumericalError; anything else escaping, a sanitizer
// report or a mismatch aborts (a finding).
//
//   CXX=clang++ cmake -S . -B build/fuzz -G Ninja -DCNNBP_PYTHON=OFF -DCNNBP_BUILD_FUZZ=ON
//   cmake --build build/fuzz && build/fuzz/cnnbp_fuzz_plan CORPUS tests/fuzz/corpus/plan -max_total_time=120
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/cpu.h"
#include "core/parallel.h"
#include "kernels/kernels.h"
#include "nn/network.h"
#include "nn/registry.h"

using namespace cnnbp;

namespace {

// Sizes where arithmetic breaks (int is what the kernels' parameters hold).
constexpr int kEdges[] = {0, 1, 2, 3, -1, 32767, 32768, 46341, 65535, 65537, 1 << 24, INT_MAX - 1, INT_MAX, INT_MIN};

class Reader {
 public:
  Reader(const uint8_t* d, size_t n) : d_(d), n_(n) {}
  uint8_t byte() { return i_ < n_ ? d_[i_++] : 0; }
  bool flag() { return byte() & 1; }
  int below(int n) { return n <= 1 ? 0 : int(byte() % unsigned(n)); }
  int small(int lo, int hi) { return lo + below(hi - lo + 1); }
  // Mostly small values; one in four an edge.
  int size() { return (byte() & 3) == 0 ? kEdges[below(int(sizeof(kEdges) / sizeof(kEdges[0])))] : small(1, 9); }
  uint64_t word() {
    uint64_t v = 0;
    for (int k = 0; k < 8; ++k) v = v << 8 | byte();
    return v;
  }

 private:
  const uint8_t* d_;
  size_t n_, i_ = 0;
};

[[noreturn]] void finding(const char* what) {
  std::fprintf(stderr, "fuzz_plan finding: %s\n", what);
  std::abort();
}

// Small integers in [-2, 2] from a simple generator: products and sums stay exact in float32.
void fill(std::vector<float>& v, uint64_t seed) {
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (float& x : v) {
    s ^= s << 13; s ^= s >> 7; s ^= s << 17;
    x = float(int(s % 5) - 2);
  }
}

// Distinct integers (no ties for max pooling), shuffled.
void fill_distinct(std::vector<float>& v, uint64_t seed) {
  for (size_t i = 0; i < v.size(); ++i) v[i] = float(int64_t(i) - int64_t(v.size() / 2));
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = v.size(); i > 1; --i) {
    s ^= s << 13; s ^= s >> 7; s ^= s << 17;
    std::swap(v[i - 1], v[s % i]);
  }
}

std::vector<const KernelTable<float>*> paths() {
  std::vector<const KernelTable<float>*> t{&kernels_f32_for(CpuCapability::baseline)};
  for (CpuCapability c : {CpuCapability::avx2, CpuCapability::avx512})
    if (compiled_capability(c) && int(detected_capability()) >= int(c)) t.push_back(&kernels_f32_for(c));
  return t;
}

void same(const std::vector<float>& a, const std::vector<float>& b, double tol, const char* what) {
  for (size_t i = 0; i < a.size(); ++i)
    if (!(std::fabs(double(a[i]) - b[i]) <= tol * (1 + std::fabs(double(b[i]))))) finding(what);
}

// ---- kernels ----------------------------------------------------------------------------------
void fuzz_conv(Reader& r) {
  const int N = r.small(0, 3), H = r.size(), W = r.size(), C = r.size(), K = r.size(), R = r.size(), S = r.size();
  const int sh = r.size(), sw = r.size(), dh = r.size(), dw = r.size();
  int pt = 0, pb = 0, pl = 0, pr = 0;
  const int mode = r.below(3);
  if (mode == 1) {  // 'same', as the layer computes it
    same_padding(H, R, sh, dh, &pt, &pb);
    same_padding(W, S, sw, dw, &pl, &pr);
  } else if (mode == 2) {
    pt = r.size(); pb = r.size(); pl = r.size(); pr = r.size();
  }
  Conv2dParams p;
  try {
    p = make_conv2d_params("fuzz", N, H, W, C, K, R, S, sh, sw, dh, dw, pt, pb, pl, pr);
  } catch (const std::invalid_argument&) {
    return;
  }
  if (p.P <= 0 || p.Q <= 0) finding("conv params accepted an empty output");
  // Run only what is small: at most 4096 terms per output sum keeps every sum exact.
  const int64_t nx = int64_t(N) * H * W * C, ny = int64_t(N) * p.P * p.Q * K, nw = int64_t(R) * S * C * K;
  if (nx > 20000 || ny > 20000 || nw > 20000 || int64_t(R) * S * C > 4096 || int64_t(N) * p.P * p.Q > 4096 ||
      int64_t(K) * R * S > 4096 || H > 512 || W > 512)
    return;
  p.relu = r.flag();
  if (std::getenv("FUZZ_PLAN_VERBOSE"))  // to read a finding: FUZZ_PLAN_VERBOSE=1 cnnbp_fuzz_plan crash-...
    std::fprintf(stderr, "conv N=%d H=%d W=%d C=%d K=%d R=%d S=%d strides=%d,%d dilation=%d,%d pads=%d,%d,%d,%d\n", N, H, W,
                 C, K, R, S, sh, sw, dh, dw, pt, pb, pl, pr);
  std::vector<float> x(static_cast<size_t>(nx)), w(static_cast<size_t>(nw)), b(static_cast<size_t>(K)), dy(static_cast<size_t>(ny)), dx0(static_cast<size_t>(nx));
  const uint64_t seed = r.word();
  fill(x, seed); fill(w, seed + 1); fill(b, seed + 2); fill(dy, seed + 3); fill(dx0, seed + 4);
  std::vector<float> ref_y, ref_dx, ref_dxa, ref_dw, ref_db;
  for (const KernelTable<float>* k : paths()) {
    for (int nt : {1, 2}) {
      ThreadScope pin(nt);
      std::vector<float> ws(size_t(std::max<int64_t>(k->conv2d_workspace(p, nt), 1)));
      std::vector<float> y(static_cast<size_t>(ny)), dx(static_cast<size_t>(nx)), dxa = dx0, dwt(static_cast<size_t>(nw)), db(static_cast<size_t>(K));
      k->conv2d_forward(y.data(), x.data(), w.data(), b.data(), ws.data(), p);
      k->conv2d_backward_data(dx.data(), dy.data(), w.data(), ws.data(), p, false);
      k->conv2d_backward_data(dxa.data(), dy.data(), w.data(), ws.data(), p, true);
      k->conv2d_backward_weight(dwt.data(), db.data(), dy.data(), x.data(), ws.data(), p);
      if (ref_y.empty() && ref_dx.empty() && ref_dw.empty()) {
        ref_y = y; ref_dx = dx; ref_dxa = dxa; ref_dw = dwt; ref_db = db;
        continue;
      }
      same(y, ref_y, 0, "conv2d_forward differs from the baseline path");
      same(dx, ref_dx, 0, "conv2d_backward_data differs from the baseline path");
      same(dxa, ref_dxa, 0, "conv2d_backward_data (accumulate) differs from the baseline path");
      same(dwt, ref_dw, 0, "conv2d_backward_weight differs from the baseline path");
      same(db, ref_db, 0, "conv2d bias gradient differs from the baseline path");
    }
  }
}

void fuzz_pool(Reader& r) {
  const int N = r.small(0, 3), H = r.size(), W = r.size(), C = r.size(), R = r.size(), S = r.size();
  const int sh = r.size(), sw = r.size();
  int pt = 0, pb = 0, pl = 0, pr = 0;
  if (r.flag()) {
    same_padding(H, R, sh, 1, &pt, &pb);
    same_padding(W, S, sw, 1, &pl, &pr);
  } else if (r.flag()) {
    pt = r.size(); pb = r.size(); pl = r.size(); pr = r.size();
  }
  Pool2dParams p;
  try {
    p = make_pool2d_params("fuzz", N, H, W, C, R, S, sh, sw, pt, pb, pl, pr);
  } catch (const std::invalid_argument&) {
    return;
  }
  const int64_t nx = int64_t(N) * H * W * C, ny = int64_t(N) * p.P * p.Q * C;
  if (nx > 20000 || ny > 20000 || int64_t(R) * S > 4096) return;
  if (std::getenv("FUZZ_PLAN_VERBOSE"))
    std::fprintf(stderr, "pool N=%d H=%d W=%d C=%d R=%d S=%d strides=%d,%d pads=%d,%d,%d,%d\n", N, H, W, C, R, S, sh, sw,
                 pt, pb, pl, pr);
  std::vector<float> x(static_cast<size_t>(nx)), dy(static_cast<size_t>(ny));
  const uint64_t seed = r.word();
  fill_distinct(x, seed);
  fill(dy, seed + 1);
  std::vector<float> ref_my, ref_mdx, ref_ay, ref_adx;
  bool first = true;
  for (const KernelTable<float>* k : paths()) {
    for (int nt : {1, 2}) {
      ThreadScope pin(nt);
      std::vector<float> my(static_cast<size_t>(ny)), mdx(static_cast<size_t>(nx)), ay(static_cast<size_t>(ny)), adx(static_cast<size_t>(nx));
      std::vector<int32_t> arg(static_cast<size_t>(ny));
      k->max_pool2d_forward(my.data(), arg.data(), x.data(), p);
      for (int32_t a : arg)
        if (ny && (a < 0 || a >= H * W)) finding("max_pool2d_forward stored an argmax outside the window's image");
      k->max_pool2d_backward(mdx.data(), dy.data(), arg.data(), p, nullptr);
      k->avg_pool2d_forward(ay.data(), x.data(), p);
      k->avg_pool2d_backward(adx.data(), dy.data(), p);
      if (first) {
        ref_my = my; ref_mdx = mdx; ref_ay = ay; ref_adx = adx;
        first = false;
        continue;
      }
      same(my, ref_my, 0, "max_pool2d_forward differs from the baseline path");
      same(mdx, ref_mdx, 0, "max_pool2d_backward differs from the baseline path");
      same(ay, ref_ay, 1e-6, "avg_pool2d_forward differs from the baseline path");
      same(adx, ref_adx, 1e-6, "avg_pool2d_backward differs from the baseline path");
    }
  }
}

// ---- layers and plans -------------------------------------------------------------------------
const char* const kActs[] = {"linear", "relu", "leaky_relu", "sigmoid", "tanh", "softmax", "gelu"};
const char* const kPads[] = {"valid", "same", "explicit", "full"};
const char* const kInits[] = {"zeros", "ones", "glorot_uniform", "he_normal", "orthogonal"};

std::vector<int64_t> ints(Reader& r, int n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = r.flag() ? int64_t(r.size()) * (r.flag() ? int64_t(1) << 32 : 1) : r.size();
  return v;
}

// Options for one layer: mostly the ones its kind reads, sometimes a wrong type, an unknown key or
// a missing required one.
LayerConfig options(Reader& r, const std::string& kind) {
  LayerConfig c;
  c.who = kind;
  auto maybe = [&](const char* key, LayerConfig::Value v) {
    if (r.below(8) != 0) c.set(key, std::move(v));
  };
  if (kind == "Conv2D") {
    maybe("filters", int64_t(r.size()));
    maybe("kernel_size", ints(r, 2));
    maybe("strides", ints(r, 2));
    maybe("dilation", ints(r, 2));
    maybe("padding", std::string(kPads[r.below(4)]));
    maybe("pads", ints(r, 4));
    maybe("use_bias", r.flag());
    maybe("kernel_initializer", std::string(kInits[r.below(5)]));
  } else if (kind == "MaxPooling2D" || kind == "AveragePooling2D") {
    maybe("pool_size", ints(r, 2));
    maybe("strides", ints(r, 2));
    maybe("padding", std::string(kPads[r.below(4)]));
  } else if (kind == "Dense") {
    maybe("units", int64_t(r.size()));
    maybe("use_bias", r.flag());
  } else if (kind == "Dropout") {
    maybe("rate", double(r.small(-1, 11)) / 10);
    maybe("seed", int64_t(r.word()));
  } else if (kind == "BatchNormalization") {
    maybe("momentum", double(r.small(-1, 11)) / 10);
    maybe("epsilon", r.flag() ? 1e-3 : -double(r.small(0, 2)));
    maybe("center", r.flag());
    maybe("scale", r.flag());
    maybe("gamma_initializer", std::string(kInits[r.below(5)]));
  } else if (kind == "Concatenate") {
    maybe("axis", int64_t(r.small(-5, 4)));
  } else if (kind == "ZeroPadding2D") {
    maybe("padding", ints(r, 4));
  } else if (kind == "Cropping2D") {
    maybe("cropping", ints(r, 4));
  } else if (kind.rfind("Random", 0) == 0 || kind == "Rescaling" || kind == "Normalization") {
    // The preprocessing layers: factors around and beyond their ranges, every fill mode and
    // interpolation (and a wrong one), crops that fit or not, huge paddings.
    auto factor = [&] { return double(r.small(-15, 15)) / 10 * (r.below(8) == 0 ? 1e6 : 1.0); };
    for (const char* k : {"lower", "upper", "height_lower", "height_upper", "width_lower", "width_upper",
                          "scale_lower", "scale_upper", "ratio_lower", "ratio_upper", "factor", "fill_value",
                          "value_lower", "value_upper", "scale", "offset"})
      if (r.below(3) == 0) c.set(k, factor());
    const char* const fills[] = {"constant", "reflect", "wrap", "nearest", "mirror"};
    maybe("fill_mode", std::string(fills[r.below(5)]));
    maybe("interpolation", std::string(r.flag() ? "bilinear" : (r.flag() ? "nearest" : "cubic")));
    const char* const modes[] = {"horizontal", "vertical", "horizontal_and_vertical", "diagonal"};
    maybe("mode", std::string(modes[r.below(4)]));
    maybe("height", int64_t(r.size()));
    maybe("width", int64_t(r.size()));
    maybe("padding", r.below(4) == 0 ? int64_t(r.word() % 2147483648u) : int64_t(r.small(-1, 4)));
    maybe("same", r.flag());
    maybe("invert", r.flag());
    maybe("seed", int64_t(r.word()));
  }
  if (kind == "Conv2D" || kind == "Dense" || kind == "Activation" || kind == "BatchNormalization" || kind == "Add")
    maybe("activation", std::string(kActs[r.below(7)]));
  if (r.below(16) == 0) c.set("alpha", r.flag() ? LayerConfig::Value(0.1) : LayerConfig::Value(std::string("x")));
  if (r.below(32) == 0) c.set("no_such_option", int64_t(1));
  return c;
}

bool cheap(const Network<float>& net, const Shape& in) {
  int64_t n = 1;
  for (int d : in) n *= d;
  if (n > 4096 || net.num_params() > 100000) return false;
  for (size_t i = 0; i < const_cast<Network<float>&>(net).layers().size(); ++i)
    if (shape_numel(net.tensor_shape(int(i))) > 20000) return false;
  return true;
}

void fuzz_network(Reader& r) {
  Shape in(size_t(r.small(1, 3)));
  for (int& d : in) d = r.size();
  std::unique_ptr<Network<float>> net;
  try {
    net = std::make_unique<Network<float>>(in);
  } catch (const std::invalid_argument&) {
    return;
  }
  static const std::vector<std::string> kinds = layer_kinds();
  const int layers = r.small(1, 5);
  for (int i = 0; i < layers; ++i) {
    const std::string& kind = kinds[size_t(r.below(int(kinds.size())))];
    const int nin = (kind == "Add" || kind == "Subtract" || kind == "Multiply" || kind == "Average" ||
                     kind == "Maximum" || kind == "Concatenate")
                        ? r.small(1, 3)
                        : (r.below(16) == 0 ? 2 : 1);
    std::vector<int> inputs;
    std::vector<Shape> shapes;
    std::vector<std::string> names;
    for (int k = 0; k < nin; ++k) {
      // Mostly the previous node; sometimes any earlier one (fan-out), the model input (-1), or
      // an index that does not exist.
      int t = r.below(4) ? i - 1 : r.small(-2, i);
      inputs.push_back(t);
      try {
        shapes.push_back(t < 0 ? net->input_shape() : net->tensor_shape(t));
      } catch (const std::exception&) {
        shapes.push_back(in);
      }
      names.push_back("n" + std::to_string(t));
    }
    if (std::getenv("FUZZ_PLAN_VERBOSE")) {
      std::fprintf(stderr, "layer %d %s on %s, inputs", i, kind.c_str(), shape_str(in).c_str());
      for (int t : inputs) std::fprintf(stderr, " %d", t);
      std::fprintf(stderr, "\n");
    }
    try {
      LayerConfig cfg = options(r, kind);
      auto layer = make_layer<float>(kind, "l" + std::to_string(i), shapes, names, cfg);
      cfg.check_all_read();
      net->add(std::move(layer), inputs);
    } catch (const std::invalid_argument&) {
    } catch (const std::out_of_range&) {
    }
  }
  if (net->layers().empty()) return;
  for (int N : {1, 7, 65536, INT_MAX}) {
    try {
      const auto b = net->plan_bytes(N, r.small(1, 64));
      if (b.total() < 0 || b.largest < 0) finding("plan_bytes went negative");
    } catch (const std::invalid_argument&) {
    } catch (const std::bad_alloc&) {
    }
  }
  try {
    net->finalize(r.word());
  } catch (const std::invalid_argument&) {
    return;
  } catch (const std::bad_alloc&) {
    return;
  }
  if (!cheap(*net, in)) return;
  const int N = r.small(1, 3);
  int64_t nin = N, nout = N;
  for (int d : in) nin *= d;
  for (int d : net->output_shape()) nout *= d;
  std::vector<float> x(static_cast<size_t>(nin)), y(static_cast<size_t>(nout));
  fill(x, r.word());
  fill(y, r.word());
  try {
    net->set_loss(LossKind::mse, 1e-7, r.flag());
    OptimizerConfig o;
    o.kind = r.flag() ? OptKind::adam : OptKind::sgd;
    o.momentum = 0.9;
    net->set_optimizer(o);
    ThreadScope pin(r.small(1, 2));
    net->train_step(x.data(), y.data(), N);
    net->predict(x.data(), N, y.data());
  } catch (const std::invalid_argument&) {
  } catch (const std::out_of_range&) {
  } catch (const std::bad_alloc&) {
  } catch (const NumericalError&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // The memory budget answers for anything larger, well below libFuzzer's malloc limit.
  setenv("CNNBP_MAX_MEMORY", "256M", 1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader r(data, size);
  switch (r.below(3)) {
    case 0: fuzz_conv(r); break;
    case 1: fuzz_pool(r); break;
    default: fuzz_network(r); break;
  }
  return 0;
}
