// CNNBP_CONV_ALGO and the measured choice of convolution algorithm (conv2d.h), in baseline code:
// the ISA objects call in with their kernels (simd/winograd.inl, conv_algo_for).
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "core/parallel.h"
#include "kernels/conv2d.h"

namespace cnnbp {

int conv_algo_setting() {
  static const int chosen = [] {
    const char* s = std::getenv("CNNBP_CONV_ALGO");
    if (!s || !*s || !std::strcmp(s, "heuristic")) return -1;
    if (!std::strcmp(s, "direct")) return int(kConvDirect);
    if (!std::strcmp(s, "winograd") || !std::strcmp(s, "winograd4")) return int(kConvWinograd4);
    if (!std::strcmp(s, "winograd2")) return int(kConvWinograd2);
    if (!std::strcmp(s, "auto")) return int(kConvAuto);
    std::fprintf(stderr, "cnnbp: CNNBP_CONV_ALGO=%s is not one of direct, winograd, winograd2, winograd4, auto, "
                         "heuristic; using heuristic\n", s);
    return -1;
  }();
  return chosen;
}

const char* conv_algo_setting_name() {
  switch (conv_algo_setting()) {
    case kConvDirect: return "direct";
    case kConvWinograd2: return "winograd2";
    case kConvWinograd4: return "winograd4";
    case kConvAuto: return "auto";
    default: return "heuristic";
  }
}

namespace {

struct Choice {
  int algo[3];
};
// (table, shape, thread count); relu and algo left out.
typedef std::array<int64_t, 17> Key;

std::mutex& choice_mutex() {
  static std::mutex m;
  return m;
}
std::map<Key, Choice>& choices() {
  static std::map<Key, Choice> m;
  return m;
}

// Every candidate of every pass, the best of 3 timed runs after a warm-up. A pass the algorithm does
// not take runs direct under any forced algorithm, which then wins or ties.
Choice measure(const Conv2dKernels& k, const Conv2dParams& p0) {
  Choice c{{kConvDirect, kConvDirect, kConvDirect}};
  const int cands[3] = {kConvDirect, kConvWinograd2, kConvWinograd4};
  Conv2dParams p = p0;
  p.relu = 0;
  const int64_t nx = int64_t(p.N) * p.H * p.W * p.C, ny = int64_t(p.N) * p.P * p.Q * p.K;
  const int64_t nw = int64_t(p.R) * p.S * p.C * p.K;
  int64_t nws = 0;
  for (int a : cands) {
    Conv2dParams q = p;
    q.algo = a;
    const int64_t s = k.workspace(q, get_num_threads());
    nws = nws > s ? nws : s;
  }
  std::vector<float> x(nx), y(ny), w(nw), b(p.K), dx(nx), dw(nw), db(p.K), ws(nws + 16);
  uint32_t st = 12345u;
  auto rnd = [&]() {
    st = st * 1664525u + 1013904223u;
    return float(int32_t(st >> 8) - (1 << 23)) / float(1 << 23);
  };
  for (auto& v : x) v = rnd();
  for (auto& v : w) v = rnd() * 0.1f;
  for (auto& v : y) v = rnd();
  for (int pass = 0; pass < 3; ++pass) {
    double best = 1e30;
    for (int a : cands) {
      Conv2dParams r = p;
      r.algo = a;
      double t_best = 1e30;
      for (int rep = 0; rep < 4; ++rep) {
        const auto t0 = std::chrono::steady_clock::now();
        if (pass == 0) k.forward(y.data(), x.data(), w.data(), b.data(), ws.data(), r);
        else if (pass == 1) k.backward_data(dx.data(), y.data(), w.data(), ws.data(), r, false);
        else k.backward_weight(dw.data(), db.data(), y.data(), x.data(), ws.data(), r);
        const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (rep > 0 && t < t_best) t_best = t;
      }
      if (t_best < best) {
        best = t_best;
        c.algo[pass] = a;
      }
    }
  }
  return c;
}

}  // namespace

int conv_algo_measured(const Conv2dKernels& k, const Conv2dParams& p, int pass) {
  const Key key = {int64_t(reinterpret_cast<uintptr_t>(k.forward)), p.N, p.H, p.W, p.C, p.K, p.R, p.S, p.sh, p.sw,
                   p.dh, p.dw, p.pt, p.pb, p.pl, p.pr, get_num_threads()};
  {
    std::lock_guard<std::mutex> lock(choice_mutex());
    auto it = choices().find(key);
    if (it != choices().end()) return it->second.algo[pass];
  }
  const Choice c = measure(k, p);  // (two threads meeting a new shape at once both measure it)
  std::lock_guard<std::mutex> lock(choice_mutex());
  choices()[key] = c;
  return c.algo[pass];
}

}  // namespace cnnbp
