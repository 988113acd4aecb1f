// Layer interface of the C++ network. A layer knows the per-sample shapes of its inputs and its
// output, its parameters (a slice of the network's flat parameter and gradient buffers), its
// non-trainable state (a slice of the flat state buffer: BatchNormalization's moving statistics),
// and runs its kernels forward and backward. Shapes are checked once, when the layer is added;
// forward/backward trust them.
#pragma once
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/buffer.h"
#include "kernels/kernels.h"

namespace cnnbp {

using Shape = std::vector<int>;

std::string shape_str(const Shape& s, bool batch = false);
// Elements of one sample's tensor. Every tensor a layer makes is checked when the layer is added
// (checked_numel), so that this product and every per-sample size fit in the kernels' int indices.
int64_t shape_numel(const Shape& s);
// The largest dimension and per-sample element count a tensor may have (kernels index with int).
constexpr int64_t kMaxSampleElems = 2147483647;
// The most elements one parameter tensor may have (2**40: 4 TiB of float32; the memory budget
// answers long before for a real machine).
constexpr int64_t kMaxParams = int64_t(1) << 40;
// shape_numel computed without overflow; beyond kMaxSampleElems (or a non-positive axis) an
// invalid_argument naming `who` and the true count.
int64_t checked_numel(const std::string& who, const Shape& s);
// a*b, or invalid_argument naming `who` and `what` when it exceeds `limit`.
int64_t checked_mul(const std::string& who, const char* what, int64_t a, int64_t b, int64_t limit);

struct ParamInfo {
  std::string name;   // "kernel", "bias", "gamma", "moving_mean", ...
  Shape shape;
  int64_t offset = 0;  // into the network's flat buffer (parameters, or state)
  int64_t size = 0;
  std::string init;    // initializer name
  int64_t fan_in = 0, fan_out = 0;
};

// What a layer gets besides its tensors in one pass: read once when the pass starts, so that
// nothing a kernel uses can change under it (the thread count sizes the workspace).
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
  // Bytes plan(k, N) keeps in the layer's own buffers (reported by the network's plan).
  virtual int64_t plan_bytes(const KernelTable<T>& k, int N) const { (void)k; (void)N; return 0; }
  // True when the output is the input, reinterpreted (Flatten): no buffer, no kernel.
  virtual bool is_alias() const { return false; }

  // One-input layers implement forward/backward; layers with several inputs (Add, Concatenate)
  // implement forward_n/backward_n, whose defaults call the one-input forms.
  virtual void forward(const KernelTable<T>& k, const PassContext& c, int N, const T* x, T* y, T* ws,
                       bool training) {
    (void)k; (void)c; (void)N; (void)x; (void)y; (void)ws; (void)training;
    throw std::logic_error(name + ": forward of a multi-input layer called with one input");
  }
  // Writes the parameter gradients (fresh; none when the layer is frozen) into grads, and dx when
  // dx is not null. dy is the network's scratch: a layer may overwrite it (a fused activation
  // turns it into d(pre) in place).
  virtual void backward(const KernelTable<T>& k, const PassContext& c, int N, const T* x, const T* y, T* dy,
                        T* dx, T* ws) {
    (void)k; (void)c; (void)N; (void)x; (void)y; (void)dy; (void)dx; (void)ws;
    throw std::logic_error(name + ": backward of a multi-input layer called with one input");
  }
  virtual void forward_n(const KernelTable<T>& k, const PassContext& c, int N, const T* const* xs, T* y, T* ws,
                         bool training) {
    forward(k, c, N, xs[0], y, ws, training);
  }
  // dxs[i] null: input i needs no gradient. accumulate[i]: add into dxs[i] rather than overwrite
  // it (only asked of layers whose accumulates() is true; others get a fresh buffer).
  virtual void backward_n(const KernelTable<T>& k, const PassContext& c, int N, const T* const* xs, const T* y,
                          T* dy, T* const* dxs, const bool* accumulate, T* ws) {
    (void)accumulate;
    backward(k, c, N, xs[0], y, dy, dxs[0], ws);
  }
  virtual bool accumulates() const { return false; }
  // What backward reads besides dy: the inputs' values, the layer's own output. The network keeps
  // a tensor from forward to backward only when some reader needs it (conservative defaults).
  virtual bool backward_reads_inputs() const { return true; }
  virtual bool backward_reads_output() const { return true; }
  // Input j's values in particular (a layer that reads only some of its inputs says which).
  virtual bool backward_reads_input(int j) const { (void)j; return backward_reads_inputs(); }
  // Whether forward may write its output over input j (elementwise, same size): the network then
  // gives the output that input's buffer when nothing reads the input later.
  virtual bool can_overwrite_input(int j) const { (void)j; return false; }
  // An output the layer can compute again from its inputs, cheaply and to the bit, after the
  // forward pass (BatchNormalization: its affine map, residual and ReLU with that pass's scale and
  // shift). The network does not keep such an output for a reader's backward pass when the inputs
  // are kept anyway: it recomputes it into a free buffer just before that reader's backward
  // (Network::plan_activations).
  virtual bool can_recompute_output() const { return false; }
  virtual void recompute_output(const KernelTable<T>& k, int N, const T* const* xs, T* y) const {
    (void)k; (void)N; (void)xs; (void)y;
    throw std::logic_error(name + ": this layer cannot recompute its output");
  }

  // Prologue fusion (Network::run_forward, training passes): a layer whose only reader applies
  // its map as it loads its input need not store its output. gives_prologue: the layer's output
  // is max(0, x*scale + shift) per channel of its one input (BatchNormalization+ReLU), with the
  // scale and shift of the last forward pass in prologue_scale/shift; its forward_n then gets a
  // null y and only prepares them. takes_prologue: the reader's forward and weight gradient can
  // read that layer's input through the map (the convolution's Winograd input transform), for a
  // batch of N; the network sets pre_scale/pre_shift before each of the layer's passes (null: none).
  virtual bool gives_prologue() const { return false; }
  virtual const T* prologue_scale() const { return nullptr; }
  virtual const T* prologue_shift() const { return nullptr; }
  virtual bool takes_prologue(const KernelTable<T>& k, int N) const { (void)k; (void)N; return false; }
  const T* pre_scale = nullptr;
  const T* pre_shift = nullptr;

  // Inference folding (BatchNormalization into the convolution before it; see Network):
  // inference_affine gives the per-channel y = x*scale + shift (and a ReLU it applies after) that
  // the layer computes in inference; forward_folded runs the layer followed by that affine map
  // and activation in one pass. Each returns false when the layer cannot take part.
  virtual bool inference_affine(T* scale, T* shift, Act* act) const {
    (void)scale; (void)shift; (void)act;
    return false;
  }
  // The monitor's extra statistics: a BatchNormalization's last batch statistics, averaged over
  // channels (mean of |mean|, mean of variance); false for other layers.
  virtual bool batch_statistics(double* mean_abs, double* mean_var) const {
    (void)mean_abs; (void)mean_var;
    return false;
  }
  virtual bool has_inference_affine() const { return false; }  // whether inference_affine answers
  virtual bool can_fold_affine() const { return false; }
  virtual void plan_fold() {}  // allocates what forward_folded needs (planning, not in a pass)
  virtual void forward_folded(const KernelTable<T>& k, const PassContext& c, int N, const T* x, T* y, T* ws,
                              const T* scale, const T* shift, Act act) {
    (void)k; (void)c; (void)N; (void)x; (void)y; (void)ws; (void)scale; (void)shift; (void)act;
    throw std::logic_error(name + ": cannot fold an affine map into this layer");
  }
  // Pooling fused into the producer's forward pass (Network::run_forward): per image, on one
  // thread, the producer's output goes into that thread's scratch and is pooled from there, so the
  // full-size tensor is never stored or read back. The producer answers image_forward_ok (its
  // per-image pass gives the bits of its batch pass: the convolution's direct kernels) and runs
  // forward_image (one image, the calling thread only: get_num_threads() is 1 there) in
  // image_workspace(k) elements of scratch; the pooling runs forward_pooled over the batch.
  virtual bool image_forward_ok(const KernelTable<T>& k, int N) const { (void)k; (void)N; return false; }
  virtual int64_t image_workspace(const KernelTable<T>& k) const { (void)k; return 0; }
  virtual void forward_image(const KernelTable<T>& k, const T* x, T* y, T* ws) const {
    (void)k; (void)x; (void)y; (void)ws;
    throw std::logic_error(name + ": no per-image forward pass");
  }
  virtual bool pools_images() const { return false; }
  // Scratch forward_pooled needs with `producer` on nthreads threads.
  virtual int64_t pooled_workspace(const KernelTable<T>& k, const Layer<T>& producer, int nthreads) const {
    (void)k; (void)producer; (void)nthreads;
    return 0;
  }
  virtual void forward_pooled(const KernelTable<T>& k, const PassContext& c, int N, const Layer<T>& producer,
                              const T* x, T* y, T* ws) {
    (void)k; (void)c; (void)N; (void)producer; (void)x; (void)y; (void)ws;
    throw std::logic_error(name + ": cannot pool a producer's images");
  }

  // ReLU derivative applied by max pooling's backward (paired in Network::finalize): relu_output()
  // says the output is a ReLU's (fused into the layer's store, relu'(pre) = [y > 0]);
  // takes_relu_grad() that the layer's backward can multiply the gradient it sends back by that
  // derivative (max pooling: only a window's maximum gets a gradient, and it is positive exactly
  // when the window's output is). relu_pair: planned for this reader (it then keeps its output);
  // relu_grad_in / relu_grad_done: set by the network for one backward pass, on the reader
  // (apply it) and on the producer (dy already has it), so that a pass that stops at the
  // producer's output (saliency) still gets the gradient after the ReLU.
  virtual bool relu_output() const { return false; }
  virtual bool takes_relu_grad() const { return false; }
  bool relu_pair = false;
  bool relu_grad_in = false;
  bool relu_grad_done = false;

  // Moves what the last training forward pass measured into the state buffer (BatchNormalization's
  // moving statistics); called only when the step succeeded.
  virtual void commit_state(const KernelTable<T>& k) { (void)k; }

  std::string name;
  std::vector<Shape> in_shapes;  // one per input
  Shape in_shape, out_shape;     // in_shape: the first input's
  int64_t in_size = 0, out_size = 0;
  std::vector<ParamInfo> params;  // trainable (unless the layer is frozen)
  std::vector<ParamInfo> state;   // never trained: moving statistics
  bool trainable = true;
  bool train_params() const { return trainable && !params.empty(); }
  // Parameter i of this layer in the flat parameter / gradient / state buffers (set by finalize).
  T* w(size_t i) const { return pbase + params[i].offset; }
  T* g(size_t i) const { return gbase + params[i].offset; }
  T* s(size_t i) const { return sbase + state[i].offset; }
  T* pbase = nullptr;
  T* gbase = nullptr;
  T* sbase = nullptr;
};

}  // namespace cnnbp
