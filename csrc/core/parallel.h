// Threading: one setting (set_num_threads), cnnbp's own thread pool underneath (parallel.cpp).
//
// parallel_for(n, min_per_thread, f) calls f(begin, end, tid) on contiguous ranges of [0, n), one
// per thread (tid < that count indexes per-thread scratch; which thread runs which range may vary).
// The split depends only on n, min_per_thread and the thread setting; no result depends on it:
// sums over items are taken in fixed blocks (reduce_blocks below), so the same inputs give the
// same bits on any thread count. Work smaller than two chunks runs inline on the calling thread.
#pragma once
#include <cstdint>

#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#endif

namespace cnnbp {

int get_num_threads();     // 1 in a child forked after cnnbp loaded (the pool's threads are not in it)
bool in_forked_child();
void set_num_threads(int n);
int default_num_threads();

// Pins the thread count of the calling thread for one pass (a training step, one op): while a
// ThreadScope lives, get_num_threads() on this thread returns the value read when the pass began,
// so a set_num_threads() from another Python thread cannot change it between planning (workspace
// sized for n threads) and a kernel (which would split over more). The network reads the setting
// once per step, keeps it in PassContext, and opens a scope with it around every kernel it runs.

// FpStateScope restores the thread's whole floating-point control and status state (MXCSR on
// x86-64; FPCR and FPSR on aarch64), status flags included, when it ends: a call into cnnbp must
// not leave a divide-by-zero or inexact flag behind for the caller (a compiler may evaluate log(0)
// speculatively where the source branches around it). Every ThreadScope holds one (the network's
// entry points open a ThreadScope), and the op bindings take one as their pybind11 call guard.
#if defined(__aarch64__)
using FpState = uint64_t;  // FPCR in the low word, FPSR in the high one
#else
using FpState = unsigned;
#endif

class FpStateScope {
 public:
  FpStateScope();
  ~FpStateScope();
  FpStateScope(const FpStateScope&) = delete;
  FpStateScope& operator=(const FpStateScope&) = delete;

 private:
  FpState saved_;
};

class ThreadScope {
 public:
  explicit ThreadScope(int n);
  ~ThreadScope();
  ThreadScope(const ThreadScope&) = delete;
  ThreadScope& operator=(const ThreadScope&) = delete;

 private:
  int saved_;
  FpStateScope fp_;
};

// Denormals are flushed to zero inside cnnbp's parallel work, where subnormal gradients would
// otherwise slow every instruction that touches them (x86-64: FTZ and DAZ in MXCSR; aarch64: FZ in
// FPCR, which covers inputs and outputs); the thread's previous floating-point state is restored
// on the way out, so the caller's stays as it was.
// (Free functions with internal linkage: this header is compiled into every ISA's object.)
// fp_state/set_fp_state read and write that state (nothing on other architectures).
#if defined(__x86_64__) || defined(_M_X64)
static inline FpState fp_state() { return _mm_getcsr(); }
static inline void set_fp_state(FpState s) { _mm_setcsr(s); }
constexpr FpState kFlushDenormals = 0x8040u;  // FTZ (bit 15) | DAZ (bit 6)
#elif defined(__aarch64__)
static inline FpState fp_state() {
  uint64_t cr, sr;
  __asm__ volatile("mrs %0, fpcr" : "=r"(cr));
  __asm__ volatile("mrs %0, fpsr" : "=r"(sr));
  return (cr & 0xffffffffu) | (sr << 32);
}
static inline void set_fp_state(FpState s) {
  const uint64_t cr = s & 0xffffffffu, sr = s >> 32;
  __asm__ volatile("msr fpcr, %0" : : "r"(cr));
  __asm__ volatile("msr fpsr, %0" : : "r"(sr));
}
constexpr FpState kFlushDenormals = FpState(1) << 24;  // FPCR.FZ
#else
static inline FpState fp_state() { return 0; }
static inline void set_fp_state(FpState) {}
constexpr FpState kFlushDenormals = 0;
#endif
static inline FpState enter_flush_denormals() {
  const FpState saved = fp_state();
  set_fp_state(saved | kFlushDenormals);
  return saved;
}
static inline void leave_flush_denormals(FpState saved) { set_fp_state(saved); }

// Number of threads parallel_for will use for n items with at least min_per_thread each.
static inline int threads_for(int64_t n, int64_t min_per_thread) {
  int t = get_num_threads();
  if (min_per_thread < 1) min_per_thread = 1;
  int64_t by_work = n / min_per_thread;
  if (by_work < t) t = static_cast<int>(by_work < 1 ? 1 : by_work);
  return t;
}

// The pool behind parallel_for (parallel.cpp): runs fn(ctx, begin, end, tid) over nchunks
// contiguous chunks of [0, n) (4 per thread instead of one on a busy machine) on up to nt threads
// (the caller is tid 0). Chunks are claimed one at a time, so a thread the OS has descheduled
// holds up at most the chunk it has begun; the caller returns when every chunk is done, and fn
// sees FTZ/DAZ on every thread.
using ChunkFn = void (*)(void* ctx, int64_t begin, int64_t end, int tid);
void run_chunks(int64_t n, int nt, int nchunks, ChunkFn fn, void* ctx);

// run_chunks with a callable g(begin, end, tid) (not copied: it lives on the caller's stack).
template <typename G>
void run_chunks(int64_t n, int nt, G& g) {
  run_chunks(n, nt, nt, [](void* ctx, int64_t b, int64_t e, int tid) { (*static_cast<G*>(ctx))(b, e, tid); },
             const_cast<void*>(static_cast<const void*>(&g)));
}

template <typename F>
void parallel_for(int64_t n, int64_t min_per_thread, F&& f) {
  if (n <= 0) return;
  const int nt = threads_for(n, min_per_thread);
  if (nt <= 1) {
    const FpState fp = enter_flush_denormals();
    f(int64_t(0), n, 0);
    leave_flush_denormals(fp);
    return;
  }
  run_chunks(n, nt, f);
}

// Reductions whose result must not depend on the thread count (weight gradients, normalisation
// statistics, monitor sums) split their n items into fixed blocks: block b of nb covers
// [block_begin(n, nb, b), block_begin(n, nb, b + 1)), its partial sum is computed alone and in
// item order, and the partials are added in block order. nb depends on n (and a cap from the
// memory the partials may take) only, never on the thread count, so any number of threads gives
// the same bits; threads beyond nb have no share of such a reduction.
constexpr int kReduceBlocks = 16;
static inline int reduce_blocks(int64_t n, int64_t cap = kReduceBlocks) {
  if (cap > kReduceBlocks) cap = kReduceBlocks;
  if (cap < 1) cap = 1;
  return int(n < cap ? (n < 1 ? 1 : n) : cap);
}
static inline int64_t block_begin(int64_t n, int nb, int64_t b) { return n * b / nb; }

// Runs f(b, tid) for every block b in [0, nb), blocks split over threads in contiguous ranges,
// at least min_blocks_per_thread each (tid indexes per-thread scratch).
template <typename F>
void parallel_blocks(int nb, int64_t min_blocks_per_thread, F&& f) {
  parallel_for(nb, min_blocks_per_thread, [&](int64_t b0, int64_t b1, int tid) {
    for (int64_t b = b0; b < b1; ++b) f(int(b), tid);
  });
}

// Calls f(i, nt) for every i in [0, nt), each call on one of the pool's threads (the tests'
// probes of the region size and of MXCSR inside it). Kernels use parallel_for or parallel_blocks,
// whose results do not depend on how many threads ran.
template <typename F>
void parallel_region(int nt, F&& f) {
  if (nt <= 1) {
    const FpState fp = enter_flush_denormals();
    f(0, 1);
    leave_flush_denormals(fp);
    return;
  }
  auto g = [&](int64_t b, int64_t, int) { f(int(b), nt); };
  run_chunks(nt, nt, g);
}

// The number of distinct threads that run a region of nt chunks when every chunk waits (up to
// 10 s) until all have begun: nt when the pool gives each chunk a thread of its own (tests).
int threads_in_region(int nt);

}  // namespace cnnbp
