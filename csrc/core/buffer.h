// 64-byte aligned storage that only grows: a buffer sized once for the largest batch is reused by
// every later step, so a steady-state training step allocates nothing.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

namespace cnnbp {

constexpr std::size_t kAlign = 64;

// Number of Buffer allocations made in this process (tests check a steady-state step adds none).
int64_t buffer_allocations();
void count_buffer_allocation();

template <typename T>
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(std::size_t n) { reserve(n); }
  ~Buffer() { std::free(data_); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept : data_(o.data_), cap_(o.cap_) { o.data_ = nullptr; o.cap_ = 0; }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) { std::free(data_); data_ = o.data_; cap_ = o.cap_; o.data_ = nullptr; o.cap_ = 0; }
    return *this;
  }

  // Makes room for n elements; old contents are kept only when no reallocation happens.
  void reserve(std::size_t n) {
    if (n <= cap_) return;
    std::size_t bytes = ((n * sizeof(T) + kAlign - 1) / kAlign) * kAlign;
    if (bytes / sizeof(T) < n) throw std::bad_alloc();
    void* p = std::aligned_alloc(kAlign, bytes);
    if (!p) throw std::bad_alloc();
    count_buffer_allocation();
    std::free(data_);
    data_ = static_cast<T*>(p);
    cap_ = n;
  }
  void zero() { if (data_) std::memset(data_, 0, cap_ * sizeof(T)); }
  T* data() { return data_; }
  const T* data() const { return data_; }
  std::size_t capacity() const { return cap_; }

 private:
  T* data_ = nullptr;
  std::size_t cap_ = 0;
};

}  // namespace cnnbp
