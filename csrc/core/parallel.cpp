#include "core/parallel.h"

#include "core/buffer.h"

#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace cnnbp {

namespace {
int usable_cores() {
#ifdef __linux__
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int c = CPU_COUNT(&set);
    if (c > 0) return c;
  }
#endif
#ifdef _OPENMP
  return omp_get_num_procs();
#else
  return 1;
#endif
}

std::atomic<int>& thread_setting() {
  static std::atomic<int> n{default_num_threads()};
  return n;
}

// libgomp's worker threads do not survive fork(): a child that enters a parallel region hangs.
// A child of a process that loaded cnnbp therefore runs every kernel on its calling thread.
std::atomic<bool> g_forked_child{false};
void on_fork_child() { g_forked_child.store(true, std::memory_order_relaxed); }
const int g_atfork_registered = pthread_atfork(nullptr, nullptr, on_fork_child);
}  // namespace

bool in_forked_child() { return g_forked_child.load(std::memory_order_relaxed); }

int default_num_threads() {
  if (const char* s = std::getenv("OMP_NUM_THREADS")) {
    // OMP_NUM_THREADS may be a list ("4,2"); the first level is ours.
    int v = std::atoi(s);
    if (v > 0) return v;
  }
  return usable_cores();
}

namespace {
thread_local int tl_pinned_threads = 0;  // > 0 inside a ThreadScope on this thread
}  // namespace

FpStateScope::FpStateScope() : saved_(fp_state()) {}
FpStateScope::~FpStateScope() { set_fp_state(saved_); }

ThreadScope::ThreadScope(int n) : saved_(tl_pinned_threads) { tl_pinned_threads = n < 1 ? 1 : n; }
ThreadScope::~ThreadScope() { tl_pinned_threads = saved_; }

int get_num_threads() {
#ifdef _OPENMP
  (void)g_atfork_registered;
  if (in_forked_child()) return 1;
  if (tl_pinned_threads > 0) return tl_pinned_threads;
  return thread_setting().load(std::memory_order_relaxed);
#else
  return 1;
#endif
}

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("set_num_threads: expected a positive thread count, got " + std::to_string(n));
  thread_setting().store(n, std::memory_order_relaxed);
}

namespace {
std::atomic<int64_t> g_buffer_allocations{0};
}  // namespace
int64_t buffer_allocations() { return g_buffer_allocations.load(std::memory_order_relaxed); }
void count_buffer_allocation() { g_buffer_allocations.fetch_add(1, std::memory_order_relaxed); }

}  // namespace cnnbp
