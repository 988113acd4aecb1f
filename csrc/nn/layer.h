// Layer interface of the C++ network. A layer knows its per-sample input/output shapes, its
// parameters (a slice of the network's flat buffers), and runs its kernels forward and backward.
// Shapes are checked once, when the layer is added; forward/backward trust them.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/buffer.h"
#include "kernels/kernels.h"

namespace cnnbp {

using Shape = std::vector<int>;

std::string shape_str(const Shape& s, bool batch = false);
int64_t shape_numel(const Shape& s);

struct ParamInfo {
  std::string name;   // "kernel" or "bias"
  Shape shape;
  int64_t offset = 0;  // into the network's flat buffer
  int64_t size = 0;
  std::string init;    // initializer name
  int64_t fan_in = 0, fan_out = 0;
};

// What a layer gets besides its tensors in one pass.
struct PassContext {
  int nthreads = 1;
  uint64_t step = 0;   // optimizer step counter: the dropout stream
};

template <typename T>
class Layer {
 public:
  virtual ~Layer() = default;
  virtual const char* kind() const = 0;

  // T elements of shared scratch for a batch of N (freely overwritten between layers).
  virtual int64_t workspace(const KernelTable<T>& k, int N, int nthreads) const {
    (void)k; (void)N; (void)nthreads;
    return 0;
  }
  // Per-layer state kept from forward to backward (arg-max, dropout mask), grown by plan().
  virtual void plan(const KernelTable<T>& k, int N) { (void)k; (void)N; }
  // True when the output is the input, reinterpreted (Flatten): no buffer, no kernel.
  virtual bool is_alias() const { return false; }

  virtual void forward(const KernelTable<T>& k, const PassContext& c, int N, const T* x, T* y,
                       T* ws, bool training) = 0;
  // Writes the parameter gradients (fresh) into grads, and dx when dx is not null. dy is the
  // network's scratch: a layer may overwrite it (a fused activation turns it into d(pre) in place).
  virtual void backward(const KernelTable<T>& k, const PassContext& c, int N, const T* x,
                        const T* y, T* dy, T* dx, T* ws) = 0;

  std::string name;
  Shape in_shape, out_shape;
  int64_t in_size = 0, out_size = 0;
  std::vector<ParamInfo> params;
  // Parameter i of this layer in the flat parameter / gradient buffers (set by finalize).
  T* w(size_t i) const { return pbase + params[i].offset; }
  T* g(size_t i) const { return gbase + params[i].offset; }
  T* pbase = nullptr;
  T* gbase = nullptr;
};

}  // namespace cnnbp
