// Network<T>: the layers in order, one flat parameter buffer and one flat gradient buffer,
// activations and scratch planned once per batch size (buffers only grow, so a steady-state step
// allocates nothing), and the whole training step (forward, loss, backward, update) in one call.
// Network<float> trains; Network<double> runs the portable kernels in double for gradient checks.
#pragma once
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "nn/layers.h"

namespace cnnbp {

struct OptimizerConfig {
  OptKind kind = OptKind::sgd;
  double lr = 0.01, momentum = 0.0, weight_decay = 0.0;
  bool nesterov = false;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-7;
};

struct StepResult {
  double loss;
  int64_t correct;
};

// Networks alive in this process (tests check that dropped models free theirs).
int64_t live_networks();

template <typename T>
class Network {
 public:
  explicit Network(const Shape& input_shape);
  ~Network();
  Network(const Network&) = delete;
  Network& operator=(const Network&) = delete;

  // Building. Each add checks the new layer against the current output shape.
  void add(std::unique_ptr<Layer<T>> layer);
  const Shape& input_shape() const { return input_shape_; }
  const Shape& output_shape() const { return layers_.empty() ? input_shape_ : layers_.back()->out_shape; }
  std::vector<std::unique_ptr<Layer<T>>>& layers() { return layers_; }
  // Allocates the flat buffers and initialises every parameter from seed.
  void finalize(uint64_t seed);
  void initialize(uint64_t seed);
  bool finalized() const { return finalized_; }
  int64_t num_params() const { return num_params_; }
  T* params() { return params_.data(); }
  T* grads() { return grads_.data(); }

  // Training configuration. Loss kinds on probabilities are fused with a final softmax or
  // sigmoid layer into the from-logits form unless fuse is false.
  void set_loss(LossKind kind, double eps, bool fuse);
  LossKind loss_kind() const { return loss_.kind; }
  bool loss_fused() const { return train_layers_ != layers_.size(); }
  void set_optimizer(const OptimizerConfig& cfg);
  const OptimizerConfig& optimizer() const { return opt_; }
  void set_learning_rate(double lr) { opt_.lr = lr; }
  int64_t iterations() const { return iterations_; }
  void set_iterations(int64_t t) { iterations_ = t; }
  T* opt_state(int i) { return i == 0 ? m_.data() : v_.data(); }
  int64_t opt_state_count() const;

  // One step: forward (training mode), loss, backward, update. x: [N, *input_shape];
  // target: [N, K] or [N] labels for sparse losses. Throws NumericalError (weights untouched)
  // when the loss is not finite.
  StepResult train_step(const T* x, const T* target, int N);
  // Parts of the step, for gradient accumulation, all-reduce, and inspection.
  void forward(const T* x, int N, bool training);                   // keeps a copy of x
  StepResult loss_backward(const T* target, int N, T* input_grad);  // after forward(training)
  void backward_from_output(const T* dout, int N, T* input_grad);   // d(output) given
  // Backward through layers [stop, from) only: dout is d/d(output of layer from-1); grad receives
  // d/d(input of layer stop) (saliency maps, Grad-CAM). Parameter gradients are overwritten.
  void backward_between(const T* dout, int N, size_t from, size_t stop, T* grad);
  void apply_update();
  // Data-parallel step, first half: forward (training), loss and backward into the gradient
  // buffer, then the gradients multiplied by grad_scale (a rank's share of the global batch, so
  // that a sum over ranks is the global mean). Never throws on a non-finite loss: every rank must
  // reach the all-reduce; the caller checks the reduced loss before apply_update.
  // grads_ready, when given, is called during the backward pass each time a layer's parameter
  // gradients are final, with that layer's range [begin, end) of the flat gradient buffer (layers
  // in reverse order, so the ranges move from the end of the buffer to its start): the caller can
  // start reducing them while the earlier layers' backward runs.
  using GradsReady = std::function<void(int64_t begin, int64_t end)>;
  StepResult compute_gradients(const T* x, const T* target, int N, double grad_scale,
                               const GradsReady& grads_ready = nullptr);
  // Dropout masks depend on (layer seed, step, stream): data-parallel ranks use their rank as the
  // stream so that their masks differ; 0 (the default) gives the single-process masks.
  void set_rng_stream(uint64_t s) { rng_stream_ = s; }
  uint64_t rng_stream() const { return rng_stream_; }
  // Inference: full forward, output copied to out [N, *output_shape].
  void predict(const T* x, int N, T* out);
  // Loss and correct count without updating anything.
  StepResult evaluate(const T* x, const T* target, int N);
  // Output of layer i from the last forward pass ([N, *out_shape]); valid until the next pass.
  const T* activation(size_t i) const;
  int last_batch() const { return last_N_; }

  std::mutex& mutex() { return mu_; }

  // Per-layer wall time of forward and backward passes (seconds, summed since the last reset),
  // plus loss and update; off by default (two clock reads per layer pass when on).
  struct Profile {
    std::vector<double> forward, backward;
    double loss = 0, update = 0;
    int64_t steps = 0;
  };
  void set_profiling(bool on);
  // Debug: check every layer's output, input gradient and parameter gradients for NaN/Inf in
  // each training step, and name the first layer that produced one (NumericalError).
  void set_check_numerics(bool on) { check_numerics_ = on; }
  bool check_numerics() const { return check_numerics_; }
  const Profile& profile() const { return prof_; }

  // Validation helpers for the API edge.
  void check_target(const T* target, int N) const;
  int output_classes() const;

 private:
  void plan(int N);
  void run_forward(const T* x, int N, bool training, size_t upto);
  void run_backward(int N, size_t from, T* input_grad, size_t stop = 0, const GradsReady* ready = nullptr);
  StepResult compute_loss(const T* target, int N, bool want_grad);
  const T* act_ptr(size_t i) const;
  T* act_ptr(size_t i);

  const KernelTable<T>& k_;
  Shape input_shape_;
  int64_t input_size_;
  std::vector<std::unique_ptr<Layer<T>>> layers_;
  bool finalized_ = false;
  int64_t num_params_ = 0;
  Buffer<T> params_, grads_, m_, v_;

  LossParams loss_{LossKind::mse, 1e-7};
  bool loss_set_ = false;
  size_t train_layers_ = 0;
  OptimizerConfig opt_;
  bool opt_set_ = false;
  int64_t iterations_ = 0;
  uint64_t rng_stream_ = 0;
  uint64_t pass_step() const { return uint64_t(iterations_) ^ (rng_stream_ << 40); }

  int planned_N_ = 0, planned_threads_ = 0;
  std::vector<Buffer<T>> acts_;
  Buffer<T> input_copy_, dbuf_[2], ws_;
  const T* x_ = nullptr;  // input of the last forward pass
  int last_N_ = 0;
  size_t last_upto_ = 0;
  // Set only by forward(), which keeps its own copy of the input: the backward entry points need
  // it (after train_step, evaluate or predict the caller's input may already be gone).
  bool backward_ready_ = false;
  std::mutex mu_;
  bool profiling_ = false;
  bool check_numerics_ = false;
  void check_finite(const T* p, int64_t n, const Layer<T>& l, const char* what) const;
  Profile prof_;
};

}  // namespace cnnbp
