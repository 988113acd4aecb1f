// 64-byte aligned storage that only grows: a buffer sized once for the largest batch is reused by
// every later step, so a steady-state training step allocates nothing. Large buffers are mapped
// directly (and unmapped when freed): through malloc, the freed activations of dropped models
// stayed in the process (glibc raises its mmap threshold after the first free and then keeps
// the memory), so building and dropping 100 models grew the resident size by 200 MiB.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include <sys/mman.h>

namespace cnnbp {

constexpr std::size_t kAlign = 64;

// std::bad_alloc (MemoryError in Python) that says how much was asked for.
class AllocError : public std::bad_alloc {
 public:
  explicit AllocError(double bytes) {
    std::snprintf(msg_, sizeof(msg_), "cnnbp: cannot allocate %.3g GiB (a layer or batch too large for this machine)",
                  bytes / (1024.0 * 1024.0 * 1024.0));
  }
  const char* what() const noexcept override { return msg_; }

 private:
  char msg_[128];
};

// Number of Buffer allocations made in this process (tests check a steady-state step adds none).
int64_t buffer_allocations();
void count_buffer_allocation();

template <typename T>
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(std::size_t n) { reserve(n); }
  ~Buffer() { release(); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept : data_(o.data_), cap_(o.cap_), mapped_(o.mapped_) {
    o.data_ = nullptr;
    o.cap_ = 0;
    o.mapped_ = 0;
  }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      release();
      data_ = o.data_;
      cap_ = o.cap_;
      mapped_ = o.mapped_;
      o.data_ = nullptr;
      o.cap_ = 0;
      o.mapped_ = 0;
    }
    return *this;
  }

  // Makes room for n elements; old contents are kept only when no reallocation happens.
  void reserve(std::size_t n) {
    if (n <= cap_) return;
    if (n > (std::size_t(1) << 46) / sizeof(T)) throw AllocError(double(n) * sizeof(T));  // > 64 TiB
    std::size_t bytes = ((n * sizeof(T) + kAlign - 1) / kAlign) * kAlign;
    void* p = nullptr;
    std::size_t mapped = 0;
    if (bytes >= kHugeThreshold) {
      bytes = (bytes + kHuge - 1) / kHuge * kHuge;
      p = map_huge(bytes);
      mapped = bytes;
    } else if (bytes >= kMapThreshold) {
      p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) throw AllocError(double(bytes));
      mapped = bytes;
    } else {
      p = std::aligned_alloc(kAlign, bytes);
      if (!p) throw AllocError(double(bytes));
    }
    count_buffer_allocation();
    release();
    data_ = static_cast<T*>(p);
    cap_ = n;
    mapped_ = mapped;
  }
  void zero() { if (data_) std::memset(data_, 0, cap_ * sizeof(T)); }
  T* data() { return data_; }
  const T* data() const { return data_; }
  std::size_t capacity() const { return cap_; }

 private:
  static constexpr std::size_t kMapThreshold = std::size_t(256) << 10;
  // From 4 MiB: a mapping aligned to 2 MiB and offered to the kernel's transparent huge pages
  // (where it has them): a pass streaming through a tensor of several MiB then takes a TLB miss
  // per 2 MiB rather than per 4 KiB page.
  static constexpr std::size_t kHugeThreshold = std::size_t(4) << 20;
  static constexpr std::size_t kHuge = std::size_t(2) << 20;
  // bytes: a multiple of kHuge. Maps kHuge more and trims both ends to the aligned range.
  static void* map_huge(std::size_t bytes) {
    void* m = mmap(nullptr, bytes + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) throw AllocError(double(bytes));
    char* base = static_cast<char*>(m);
    char* p = reinterpret_cast<char*>((reinterpret_cast<std::uintptr_t>(base) + kHuge - 1) & ~(std::uintptr_t(kHuge) - 1));
    if (p > base) munmap(base, std::size_t(p - base));
    if (p < base + kHuge) munmap(p + bytes, std::size_t(base + kHuge - p));
#ifdef MADV_HUGEPAGE
    madvise(p, bytes, MADV_HUGEPAGE);  // (advice only: without it, plain pages)
#endif
    return p;
  }
  void release() {
    if (!data_) return;
    if (mapped_) munmap(data_, mapped_);
    else std::free(data_);
    data_ = nullptr;
    cap_ = 0;
    mapped_ = 0;
  }

  T* data_ = nullptr;
  std::size_t cap_ = 0;
  std::size_t mapped_ = 0;  // bytes mapped with mmap, or 0 for aligned_alloc
};

}  // namespace cnnbp
