// Threading: one setting (set_num_threads), OpenMP underneath, static contiguous partitions.
//
// parallel_for(n, min_per_thread, f) calls f(begin, end, tid) on contiguous ranges of [0, n).
// The split depends only on n, min_per_thread and the thread setting, so results that depend on
// the partition (per-thread partial sums) are reproducible for a given thread count. Work
// smaller than two chunks runs inline on the calling thread.
#pragma once
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace cnnbp {

int get_num_threads();     // 1 in a child forked after cnnbp loaded (libgomp is not fork-safe)
bool in_forked_child();
void set_num_threads(int n);
int default_num_threads();

// Number of threads parallel_for will use for n items with at least min_per_thread each.
static inline int threads_for(int64_t n, int64_t min_per_thread) {
  int t = get_num_threads();
  if (min_per_thread < 1) min_per_thread = 1;
  int64_t by_work = n / min_per_thread;
  if (by_work < t) t = static_cast<int>(by_work < 1 ? 1 : by_work);
  return t;
}

template <typename F>
void parallel_for(int64_t n, int64_t min_per_thread, F&& f) {
  if (n <= 0) return;
  const int nt = threads_for(n, min_per_thread);
  if (nt <= 1) {
    f(int64_t(0), n, 0);
    return;
  }
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num();
    const int nth = omp_get_num_threads();
    const int64_t b = n * tid / nth, e = n * (tid + 1) / nth;
    if (b < e) f(b, e, tid);
  }
#else
  f(int64_t(0), n, 0);
#endif
}

// Runs f(tid, nthreads) on exactly nt threads (nt from threads_for), for kernels that keep
// per-thread partial results.
template <typename F>
void parallel_region(int nt, F&& f) {
  if (nt <= 1) {
    f(0, 1);
    return;
  }
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
  { f(omp_get_thread_num(), omp_get_num_threads()); }
#else
  f(0, 1);
#endif
}

}  // namespace cnnbp
