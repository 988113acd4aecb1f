#include "core/parallel.h"

#include "core/buffer.h"

#include <pthread.h>
#include <sched.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

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
  const unsigned h = std::thread::hardware_concurrency();
  return h > 0 ? int(h) : 1;
}

std::atomic<int>& thread_setting() {
  static std::atomic<int> n{default_num_threads()};
  return n;
}

// The pool's worker threads do not survive fork(): a child of a process that loaded cnnbp runs
// every kernel on its calling thread.
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
#ifndef CNNBP_NO_THREADS
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

// ---------------------------------------------------------------------------------------------
// The thread pool behind parallel_for.
//
// One job at a time: the calling thread publishes it in word_ (its sizes and claim state, below),
// then every participant (the caller as tid 0, the workers as 1..nt-1) claims chunks with a
// compare-and-swap on that word until none is left. The caller returns when done_ reaches the
// chunk count. A worker that has not woken up yet is not waited for: whoever is running takes its
// chunks, so a thread descheduled by a busy machine delays a join by at most the chunk it has
// begun, not by the whole time slice it waits for.
//
// Waiting: a thread that finds nothing to do spins for a while (see spin_until), then sleeps on
// a condition variable; waking is a system call only when somebody sleeps.
//
// Which thread runs which chunk changes nothing in the results: chunk boundaries depend on n and
// the chunk count only, and every kernel's output depends on its ranges, not on tid (tid indexes
// scratch space; every reduction is split in fixed blocks, see reduce_blocks).
#ifndef CNNBP_NO_THREADS
namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(_M_X64)
  _mm_pause();
#elif defined(__aarch64__)
  __asm__ volatile("yield");
#endif
}

using Clock = std::chrono::steady_clock;

// A waiting thread spins before it sleeps: long on an idle machine (the next region of a step
// comes within microseconds, and waking a sleeper costs tens of them), short on a busy one, where
// a spinning thread holds a core that a descheduled partner (or the caller, between regions) is
// waiting for. Busy is measured by the pool's threads (a job's caller included): over windows of
// kWindow each compares the time it had (wall time less its sleeps) with the CPU time it got;
// two windows in a row that lost more than kLostShare (to other processes, or to blocking outside
// cnnbp) mark the machine busy for kBusyMemory. (One such window is common on an idle machine:
// a page fault storm, the interpreter's garbage collector.)
constexpr auto kIdleSpin = std::chrono::microseconds(300);
constexpr auto kBusySpin = std::chrono::microseconds(10);
constexpr auto kWindow = std::chrono::milliseconds(20);
constexpr double kLostShare = 0.25;
constexpr auto kBusyMemory = std::chrono::milliseconds(200);
constexpr int kBusyChunks = 4;
std::atomic<int64_t> g_busy_until{0};  // steady_clock ticks

inline bool machine_busy(Clock::time_point now) {
  return now.time_since_epoch().count() < g_busy_until.load(std::memory_order_relaxed);
}

Clock::duration thread_cpu_time() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

// One thread's account of the time it was owed and the time it got.
struct LostTime {
  Clock::time_point start = Clock::now();
  Clock::duration cpu0 = thread_cpu_time(), slept{0};
  int lossy = 0;  // consecutive windows that lost more than kLostShare
  void check(Clock::time_point now) {
    const Clock::duration wall = now - start;
    if (wall < kWindow) return;
    const Clock::duration lost = wall - slept - (thread_cpu_time() - cpu0);
    lossy = lost > wall * kLostShare ? lossy + 1 : 0;
    if (lossy >= 2) g_busy_until.store((now + kBusyMemory).time_since_epoch().count(), std::memory_order_relaxed);
    start = now;
    cpu0 = thread_cpu_time();
    slept = Clock::duration(0);
  }
};

// Spins until pred() holds or the spin budget has passed; true when pred() held.
template <typename P>
bool spin_until(P pred) {
  const Clock::time_point start = Clock::now();
  const Clock::duration budget = machine_busy(start) ? Clock::duration(kBusySpin) : Clock::duration(kIdleSpin);
  for (int i = 1;; ++i) {
    if (pred()) return true;
    cpu_relax();
    if ((i & 15) == 0 && Clock::now() - start > budget) return pred();
  }
}

thread_local bool tl_in_job = false;  // inside a chunk (or a job's caller): nested regions run inline

// word_ holds the job's whole claim state, so one compare-and-swap both checks that a job is the
// current one and claims a chunk of it: bits 0-31 are the claimed chunks (a bit each, up to 32
// chunks: a thread first takes the chunk with its own index, which keeps each thread on the same
// part of the data from one region to the next) or, beyond 32 chunks, the next unclaimed chunk;
// then the chunk count (12 bits), the thread count (12), the counter-mode flag and a generation
// (7 bits: a new job's word differs from the previous one's even with the same sizes).
constexpr int kMaxChunks = 4095;
constexpr int kPoolMaxThreads = 4095;
constexpr int kMaskChunks = 32;
inline int w_total(uint64_t w) { return int((w >> 32) & 0xfff); }
inline int w_threads(uint64_t w) { return int((w >> 44) & 0xfff); }
inline bool w_counter(uint64_t w) { return (w >> 56) & 1; }

// The chunk `id` would claim in word w (-1: none left).
inline int next_chunk(uint64_t w, int id) {
  const int total = w_total(w);
  if (w_counter(w)) {
    const int next = int(w & 0xffffffffu);
    return next < total ? next : -1;
  }
  const uint32_t claimed = uint32_t(w);
  if (id < total && !(claimed >> id & 1)) return id;
  const uint32_t open = ~claimed & (total == 32 ? 0xffffffffu : (1u << total) - 1);
  return open ? __builtin_ctz(open) : -1;
}
inline uint64_t with_claim(uint64_t w, int c) { return w_counter(w) ? w + 1 : w | (uint64_t(1) << c); }

class Pool {
 public:
  static Pool& instance() {
    static Pool* p = new Pool;  // never destroyed: workers may still wait on it at exit
    return *p;
  }

  void run(int64_t n, int nt, int nchunks, ChunkFn fn, void* ctx) {
    std::unique_lock<std::mutex> one(run_mutex_, std::try_to_lock);
    if (!one.owns_lock() || tl_in_job) {  // another thread's job, or nested: run here
      run_inline(n, fn, ctx);
      return;
    }
    if (nt > kPoolMaxThreads) nt = kPoolMaxThreads;
    if (nchunks > kMaxChunks) nchunks = kMaxChunks;
    // On a busy machine a region gets kBusyChunks chunks per thread: a descheduled thread then
    // holds up a quarter of its share at most, and whoever runs takes the rest.
    const Clock::time_point t0 = Clock::now();
    if (nchunks == nt && machine_busy(t0)) nchunks = std::min(nt * kBusyChunks, kMaxChunks);
    if (int64_t(nchunks) > n) nchunks = int(n);
    start_workers(nt - 1);
    fn_ = fn;
    ctx_ = ctx;
    n_ = n;
    done_.store(0, std::memory_order_relaxed);
    gen_ = (gen_ + 1) & 0x7f;
    const uint64_t w = (uint64_t(gen_) << 57) | (uint64_t(nchunks > kMaskChunks) << 56) | (uint64_t(nt) << 44) |
                       (uint64_t(nchunks) << 32);
    word_.store(w, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      { std::lock_guard<std::mutex> g(m_); }
      work_cv_.notify_all();
    }
    thread_local LostTime account;  // the caller's: it is preempted between regions as much as in them
    account.check(t0);
    const FpState fp = enter_flush_denormals();
    tl_in_job = true;
    work(0);
    tl_in_job = false;
    leave_flush_denormals(fp);
    if (!spin_until([&] { return done_.load(std::memory_order_acquire) >= nchunks; })) {
      std::unique_lock<std::mutex> lk(m_);
      caller_waits_.store(true, std::memory_order_seq_cst);
      const Clock::time_point t1 = Clock::now();
      while (done_.load(std::memory_order_seq_cst) < nchunks) done_cv_.wait(lk);
      caller_waits_.store(false, std::memory_order_relaxed);
      account.slept += Clock::now() - t1;
    }
  }

 private:
  Pool() = default;

  // A chunk must not throw (kernels validate before their regions): one that does ends the
  // process, as in an OpenMP region, rather than unwinding a caller whose job other threads run.
  static void run_chunk(ChunkFn fn, void* ctx, int64_t b, int64_t e, int tid) noexcept { fn(ctx, b, e, tid); }

  static void run_inline(int64_t n, ChunkFn fn, void* ctx) {
    const FpState fp = enter_flush_denormals();
    fn(ctx, 0, n, 0);
    leave_flush_denormals(fp);
  }

  // Workers 1..count (under run_mutex_). When the system refuses a thread, the jobs run on those
  // there are: chunks are claimed, so nothing waits for a thread that does not exist.
  void start_workers(int count) {
    while (started_ < count && !refused_) {
      try {
        std::thread([this, id = started_ + 1] { worker(id); }).detach();
        ++started_;
      } catch (const std::system_error&) {
        refused_ = true;
      }
    }
  }

  // Claims and runs chunks of the current job as thread `id` until none is left for it; returns
  // the last word seen.
  uint64_t work(int id) {
    uint64_t w = word_.load(std::memory_order_acquire);
    for (;;) {
      const int next = id < w_threads(w) ? next_chunk(w, id) : -1, total = w_total(w);
      if (next < 0) return w;
      if (!word_.compare_exchange_weak(w, with_claim(w, next), std::memory_order_acq_rel, std::memory_order_acquire))
        continue;
      // The claim succeeded, so this job is still running and fn_/ctx_/n_ are its own.
      const int64_t q = n_ / total, r = n_ % total;
      const int64_t b = next * q + (next < r ? next : r), e = b + q + (next < r ? 1 : 0);
      run_chunk(fn_, ctx_, b, e, id);
      if (done_.fetch_add(1, std::memory_order_seq_cst) + 1 == total &&
          caller_waits_.load(std::memory_order_seq_cst)) {
        { std::lock_guard<std::mutex> g(m_); }
        done_cv_.notify_one();
      }
      w = word_.load(std::memory_order_acquire);
    }
  }

  void worker(int id) {
    tl_in_job = true;
    set_fp_state(fp_state() | kFlushDenormals);  // a worker runs cnnbp's chunks only
    LostTime account;
    for (;;) {
      const uint64_t seen = work(id);
      const bool woke = spin_until([&] { return word_.load(std::memory_order_relaxed) != seen; });
      const Clock::time_point now = Clock::now();
      account.check(now);
      if (woke) continue;
      std::unique_lock<std::mutex> lk(m_);
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      while (word_.load(std::memory_order_seq_cst) == seen) work_cv_.wait(lk);
      sleepers_.fetch_sub(1, std::memory_order_relaxed);
      account.slept += Clock::now() - now;
    }
  }

  alignas(64) std::atomic<uint64_t> word_{0};
  alignas(64) std::atomic<int> done_{0};
  alignas(64) std::atomic<int> sleepers_{0};
  std::atomic<bool> caller_waits_{false};
  // The job (written by its caller before word_ is published; read after a successful claim).
  ChunkFn fn_ = nullptr;
  void* ctx_ = nullptr;
  int64_t n_ = 0;
  int gen_ = 0;
  int started_ = 0;
  bool refused_ = false;
  std::mutex run_mutex_, m_;
  std::condition_variable work_cv_, done_cv_;
};

}  // namespace

void run_chunks(int64_t n, int nt, int nchunks, ChunkFn fn, void* ctx) {
  Pool::instance().run(n, nt, nchunks, fn, ctx);
}
#else
void run_chunks(int64_t n, int, int, ChunkFn fn, void* ctx) {
  const FpState fp = enter_flush_denormals();
  fn(ctx, 0, n, 0);
  leave_flush_denormals(fp);
}
#endif

int threads_in_region(int nt) {
  std::atomic<int> begun{0};
  std::mutex m;
  std::vector<std::thread::id> ids;
  parallel_region(nt, [&](int, int) {
    {
      std::lock_guard<std::mutex> g(m);
      ids.push_back(std::this_thread::get_id());
    }
    begun.fetch_add(1);
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (begun.load() < nt && std::chrono::steady_clock::now() < until) std::this_thread::yield();
  });
  std::sort(ids.begin(), ids.end());
  return int(std::unique(ids.begin(), ids.end()) - ids.begin());
}

namespace {
std::atomic<int64_t> g_buffer_allocations{0};
}  // namespace
int64_t buffer_allocations() { return g_buffer_allocations.load(std::memory_order_relaxed); }
void count_buffer_allocation() { g_buffer_allocations.fetch_add(1, std::memory_order_relaxed); }

}  // namespace cnnbp
