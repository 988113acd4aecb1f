// Controls for the ThreadSanitizer job (.ci/tsan), built with cnnbp's thread pool
// (csrc/core/parallel.cpp): race() must be reported (two chunks, held on two threads at once,
// increment one int) and ordered() must not (consecutive jobs write the same halves of a buffer
// from swapped threads: only the pool's join orders those accesses).
#include "core/parallel.h"

#include <atomic>

namespace {
int counter;
float buf[1024];

// Runs f(tid) as a two-chunk job on two distinct threads: each chunk waits until both have begun.
template <typename F>
void on_two_threads(F f) {
  std::atomic<int> started{0};
  cnnbp::parallel_for(2, 1, [&](int64_t, int64_t, int tid) {
    started.fetch_add(1);
    while (started.load() < 2) {
    }
    f(tid);
  });
}
}  // namespace

extern "C" int race() {
  cnnbp::set_num_threads(2);
  on_two_threads([](int) { counter++; });
  return counter;
}

extern "C" float ordered() {
  cnnbp::set_num_threads(2);
  for (int it = 0; it < 20; ++it) {
    on_two_threads([](int t) { for (int i = t * 512; i < t * 512 + 512; ++i) buf[i] += 1.0f; });
    on_two_threads([](int t) { for (int i = (1 - t) * 512; i < (1 - t) * 512 + 512; ++i) buf[i] += 1.0f; });
  }
  return buf[0];
}
