// Network<T>: a directed acyclic graph of layers stored in topological order (node i reads the
// outputs of earlier nodes or the model input; the last node is the output), one flat parameter
// buffer, one flat gradient buffer and one flat state buffer (what layers update without
// gradients), activations and gradient buffers planned once per (batch size, thread count)
// (buffers only grow, so a steady-state step allocates nothing), and the whole training step
// (forward, loss, backward, update) in one call. A chain (Sequential) is the graph whose nodes
// each read the one before. Network<float> trains; Network<double> runs the portable kernels in
// double for gradient checks.
#pragma once
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "nn/layers.h"
#include "optim/schedule.h"

namespace cnnbp {

struct OptimizerConfig {
  OptKind kind = OptKind::sgd;
  // weight_decay: decoupled (p -= lr * weight_decay * p before the step) for every kind;
  // coupled_decay: SGD's L2 form (coupled_decay * p added to the gradient).
  double lr = 0.01, momentum = 0.0, weight_decay = 0.0, coupled_decay = 0.0;
  bool nesterov = false;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-7;
  double rho = 0.9, initial_accumulator = 0.1;  // RMSprop/Adadelta; Adagrad
  bool centered = false;                        // RMSprop
};

// What every optimizer does to the gradients first, and its learning rate over the steps
// (Network::apply_update): regularisation gradients added, then one clipping (Keras allows one):
// clipnorm per parameter tensor g *= clipnorm / max(|g|, clipnorm), global_clipnorm the same over
// all trainable parameters, clipvalue g = clip(g, -v, v); 0 is off. A schedule other than
// constant sets the learning rate of each step.
struct GradientConfig {
  double clipnorm = 0.0, clipvalue = 0.0, global_clipnorm = 0.0;
  LrSchedule schedule;
};

// A penalty on one parameter tensor (kernel_regularizer, bias_regularizer), added to the loss
// and its gradient: l1 * sum |w| + l2 * sum w^2.
struct RegTerm {
  int node = 0;
  int64_t offset = 0, size = 0;  // in the flat parameter buffer
  double l1 = 0.0, l2 = 0.0;
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

  // Building. add(layer, inputs) appends a node reading the outputs of nodes `inputs` (-1: the
  // model input) and returns its index; add(layer) reads the last node (a chain). Each add checks
  // the layer's input shapes against those tensors.
  int add(std::unique_ptr<Layer<T>> layer, const std::vector<int>& inputs);
  int add(std::unique_ptr<Layer<T>> layer);
  const Shape& input_shape() const { return input_shape_; }
  const Shape& output_shape() const { return layers_.empty() ? input_shape_ : layers_.back()->out_shape; }
  // Shape of tensor t: the output of node t, or the model input for t = -1.
  const Shape& tensor_shape(int t) const;
  std::vector<std::unique_ptr<Layer<T>>>& layers() { return layers_; }
  const std::vector<int>& node_inputs(size_t i) const { return inputs_[i]; }
  // Allocates the flat buffers and initialises every parameter and state from seed. Every node
  // but the last must feed a later node. keys (one per node, or none: the node index) order the
  // nodes' parameters in the flat buffers and pick their initial draws, so that a model whose
  // nodes are built in another order (Model's fusions) keeps the layout and the weights of the
  // layer-per-node network: optimizer state saved by either loads into the other.
  void finalize(uint64_t seed, const std::vector<int64_t>& keys = {});
  void initialize(uint64_t seed);
  bool finalized() const { return finalized_; }
  int64_t num_params() const { return num_params_; }
  int64_t num_state() const { return num_state_; }
  T* params() { return params_.data(); }
  T* grads() { return grads_.data(); }
  T* state() { return state_.data(); }
  // Freezes or unfreezes node i: a frozen node computes no parameter gradient, the optimizer
  // skips its parameters, and BatchNormalization runs in inference mode.
  void set_trainable(size_t i, bool on);

  // Training configuration. Loss kinds on probabilities are fused with a final softmax or
  // sigmoid layer into the from-logits form unless fuse is false. smoothing: label smoothing of
  // the cross-entropies (targets t(1 - s) + s/K, binary: + s/2; sparse labels become smoothed
  // one-hot rows).
  void set_loss(LossKind kind, double eps, bool fuse, double delta = 1.0, double smoothing = 0.0);
  LossKind loss_kind() const { return loss_.kind; }
  // Metrics computed with every loss (train_step, compute_gradients, evaluate): the sums of the
  // last batch, metric after metric (sizes: metric_size).
  void set_metrics(const std::vector<MetricSpec>& specs);
  const std::vector<double>& metric_sums() const { return metric_sums_; }
  bool loss_fused() const { return train_layers_ != layers_.size(); }
  void set_optimizer(const OptimizerConfig& cfg);
  const OptimizerConfig& optimizer() const { return opt_; }
  void set_learning_rate(double lr) { opt_.lr = lr; }
  // Clipping and schedule (kept across set_optimizer).
  void set_gradient_config(const GradientConfig& g);
  const GradientConfig& gradient_config() const { return grad_cfg_; }
  // The learning rate of the update after `step` updates (the schedule's, or the fixed rate).
  double learning_rate_at(int64_t step) const;
  void set_regularizers(const std::vector<RegTerm>& terms);
  // The penalty of every trainable regularised tensor at the current weights (in double, in a
  // fixed order); train_step, compute_gradients and evaluate add it to the loss they return.
  double regularization_loss() const;
  int64_t iterations() const { return iterations_; }
  void set_iterations(int64_t t) { iterations_ = t; }
  T* opt_state(int i) { return i == 0 ? m_.data() : (i == 1 ? v_.data() : w_.data()); }
  int64_t opt_state_count() const;

  // One step: forward (training mode), loss, backward, update. x: [N, *input_shape];
  // target: [N, K] or [N] labels for sparse losses. Throws NumericalError (weights and state
  // untouched) when the loss is not finite.
  // sample_weight (optional, [N]): the loss is sum_i w_i loss_i / N (Keras's sum over batch
  // size); the metrics stay unweighted, as Keras's compile(metrics=...).
  StepResult train_step(const T* x, const T* target, int N, const T* sample_weight = nullptr);
  // Parts of the step, for gradient accumulation, all-reduce, and inspection.
  // keeps a copy of x; the outputs of nodes `keep` stay readable (activation(i)) after the pass
  // besides those backward reads and the model's output (others may share a buffer).
  void forward(const T* x, int N, bool training, const std::vector<int>& keep = {});
  StepResult loss_backward(const T* target, int N, T* input_grad);  // after forward(training)
  void backward_from_output(const T* dout, int N, T* input_grad);   // d(output) given
  // Backward from node from-1 (dout = d/d(its output)) down to tensor `to` (a node, or -1 for
  // the model input): runs every node in (to, from) that the gradient reaches, overwriting their
  // parameter gradients, and writes d/d(tensor to) into grad (saliency maps, Grad-CAM).
  void backward_to(const T* dout, int N, size_t from, int to, T* grad);
  // The chain form: grad receives d/d(input of node stop).
  void backward_between(const T* dout, int N, size_t from, size_t stop, T* grad);
  // One optimizer step over the trainable parameters, then the state measured by the last
  // training forward pass is committed.
  void apply_update();
  // Data-parallel step, first half: forward (training), loss and backward into the gradient
  // buffer, then the gradients multiplied by grad_scale (a rank's share of the global batch, so
  // that a sum over ranks is the global mean). Never throws on a non-finite loss: every rank must
  // reach the all-reduce; the caller checks the reduced loss before apply_update.
  // grads_ready, when given, is called during the backward pass each time a node's parameter
  // gradients are final, with that node's range [begin, end) of the flat gradient buffer (nodes
  // in reverse order, so the ranges move from the end of the buffer to its start): the caller can
  // start reducing them while the earlier nodes' backward runs.
  using GradsReady = std::function<void(int64_t begin, int64_t end)>;
  StepResult compute_gradients(const T* x, const T* target, int N, double grad_scale,
                               const GradsReady& grads_ready = nullptr, const T* sample_weight = nullptr);
  // Dropout masks depend on (layer seed, step, stream): data-parallel ranks use their rank as the
  // stream so that their masks differ; 0 (the default) gives the single-process masks.
  void set_rng_stream(uint64_t s) { rng_stream_ = s; }
  uint64_t rng_stream() const { return rng_stream_; }
  // Inference: full forward, output copied to out [N, *output_shape].
  void predict(const T* x, int N, T* out);
  // Loss and correct count without updating anything.
  StepResult evaluate(const T* x, const T* target, int N, const T* sample_weight = nullptr);
  // Output of node i from the last forward pass ([N, *out_shape]); valid until the next pass.
  // An error when the output was not kept: a later layer reused its buffer (no backward reads
  // it; see forward's keep), or predict/evaluate folded the convolution into its
  // BatchNormalization.
  const T* activation(size_t i) const;
  // predict and evaluate fold each inference BatchNormalization into the convolution before it
  // (when that convolution's only reader is the BatchNormalization and it has no activation of
  // its own): one pass with scaled weights instead of two. On by default; forward() never folds.
  void set_folding(bool on) { folding_ = on; }
  bool folding() const { return folding_; }
  int folded_pairs() const;
  // train_step, compute_gradients, predict and evaluate run a convolution whose only reader is a
  // pooling layer right after it one image at a time, each image pooled while it is in cache
  // (Layer::forward_pooled; the same bits as the two passes apart). Not where a caller or the
  // GradientMonitor reads the convolution's output (forward(), a monitored step), with
  // check_numerics, nor where the convolution's backward reads its output. On by default.
  // Only for outputs of at least kPoolFusionMinElems elements per image.
  static constexpr int64_t kPoolFusionMinElems = 16384;
  void set_pool_fusion(bool on) { pool_fusion_ = on; }
  bool pool_fusion() const { return pool_fusion_; }
  int pooled_pairs() const;  // pairs the last pass ran fused
  // train_step and compute_gradients let a convolution whose input is a BatchNormalization+ReLU
  // read only by it apply the normalisation and ReLU as it loads that layer's input, in its
  // forward pass and its weight gradient (Layer::gives_prologue / takes_prologue; the float SIMD
  // paths' Winograd layers): the normalised tensor is neither stored nor recomputed for the
  // backward pass, and the results are the same bits. Not where a caller or the GradientMonitor
  // reads that tensor, nor with check_numerics. On by default.
  void set_prologue_fusion(bool on) { prologue_fusion_ = on; }
  bool prologue_fusion() const { return prologue_fusion_; }
  int prologue_pairs() const;  // pairs the last pass ran fused
  int last_batch() const { return last_N_; }

  // Bytes a training step with batch N holds: parameters, gradients, optimizer state, state,
  // activations, gradient buffers, scratch and the layers' own buffers; largest: the biggest
  // single tensor (name of its node in largest_name).
  struct PlanBytes {
    int64_t params = 0, grads = 0, optimizer = 0, state = 0, activations = 0, gradients = 0, workspace = 0,
            layers = 0, largest = 0;
    std::string largest_name;
    int64_t total() const { return params + grads + optimizer + state + activations + gradients + workspace + layers; }
  };
  PlanBytes plan_bytes(int N, int nthreads) const;

  std::mutex& mutex() { return mu_; }

  // Per-node wall time of forward and backward passes (seconds, summed since the last reset),
  // plus loss and update; off by default (two clock reads per node pass when on).
  struct Profile {
    std::vector<double> forward, backward;
    double loss = 0, update = 0;
    int64_t steps = 0;
  };
  void set_profiling(bool on);
  // Debug: check every node's output, input gradients and parameter gradients for NaN/Inf in
  // each training step, and name the first layer that produced one (NumericalError).
  void set_check_numerics(bool on) { check_numerics_ = on; }
  // The compute precision: 'float32'/'float64' (the network's dtype), or 'mixed_bfloat16' for a
  // float network: conv2d and dense multiply bf16 operands, accumulating in fp32 (kernels/bf16.h).
  void set_precision(const std::string& name);
  const std::string& precision() const { return precision_; }
  bool check_numerics() const { return check_numerics_; }
  const Profile& profile() const { return prof_; }

  // Training monitor (off by default). monitor_next(steps, samples) opens an interval: each of the
  // next training steps that completes an update counts in it, until the next monitor_next, and
  // `samples` of every `steps` of them (spread evenly: the j-th, from 0, when (j mod steps) *
  // samples mod steps < samples, so the first always) are read. A read step contributes the norms
  // of every parameter tensor, its gradient and its update, and a slice of ceil(N / samples)
  // samples of every node's output, read right after it is written (the slice moves through the
  // batch from read to read, so an interval reads about one batch in all, spread over it). A step
  // not read costs a counter. Read with monitor().
  struct Monitor {
    // per node, kOutStats values summed over the read steps: elements, sum, sum of squares, exact
    // zeros, |y| <= 0.01, |y| >= 0.99, then for a BatchNormalization the mean over channels of
    // |batch mean| and of the batch variance, summed over the read steps (0 otherwise). A node the
    // step did not run (a view, a final activation fused into the loss) has 0 elements.
    static constexpr int kOutStats = 8;
    // per parameter tensor (node order), kParamStats values over the read steps: sums of |w|
    // (after the update), |g| and |dw|/|w| (steps with |w| > 0), the largest |g| and |dw|/|w|,
    // the number of read steps with |w| > 0.
    static constexpr int kParamStats = 6;
    std::vector<double> out, out_step;  // out_step: the current step's, added at its update
    std::vector<double> param;
    std::vector<int> param_node;  // the node of each parameter tensor
    int64_t step = 0;             // the iteration of the last step counted (0: none yet)
    int64_t steps = 0;            // steps counted since monitor_next
    int64_t sampled = 0;          // of which read
    int interval = 1;             // the steps asked for at monitor_next
    int samples = 1;              // of which to read
  };
  void set_monitoring(bool on);
  bool monitoring() const { return monitoring_; }
  void monitor_next(int steps = 1, int samples = 0);  // samples 0: every step
  const Monitor& monitor() const { return mon_; }

  // Validation helpers for the API edge.
  void check_target(const T* target, int N) const;
  int output_classes() const;

 private:
  PassContext begin_pass(int N);
  void plan(int N, int nthreads);
  void plan_gradients();
  void plan_activations();
  void update_segments();
  void run_forward(const PassContext& c, const T* x, int N, bool training, size_t upto, bool fold = false,
                   bool pool = false);
  bool pool_fused(size_t i, int N, bool training) const;  // whether node i runs per image with its pooling
  bool pre_fused(size_t r, int N, size_t upto) const;  // whether node r's reader applies it (training pass)
  void set_prologue(Layer<T>& l, int from) const;  // l's pass reads node `from` as a prologue (-1: none)
  // Backward through nodes (to, from): the gradient of node from-1's output is in its slot.
  // reuse_dead: recomputed inputs may go into activation slots dead for the rest of this pass
  // (a training step: no second backward pass on the same forward pass).
  void run_backward(const PassContext& c, int N, size_t from, int to, T* input_grad,
                    const GradsReady* ready = nullptr, bool reuse_dead = false);
  StepResult compute_loss(const T* target, int N, bool want_grad, const T* sample_weight = nullptr);
  void regularize_and_clip();   // apply_update's first part (see GradientConfig)
  GradientConfig grad_cfg_;
  std::vector<RegTerm> reg_;
  double smoothing_ = 0.0;
  Buffer<T> smooth_;            // the smoothed targets of the last batch
  std::vector<MetricSpec> metrics_;
  std::vector<double> metric_sums_;  // the last batch's, set by compute_loss
  int root(int t) const { return t < 0 ? -1 : root_[t]; }
  T* seed_grad(size_t node);
  const T* act_ptr(int t) const;
  T* grad_ptr(int t) { return dslots_[gslot_[t]].data(); }

  void monitor_output(size_t node, const T* y, int N, int64_t per_sample);
  void monitor_update();  // apply_update's monitor part: the step's norms and outputs
  bool monitoring_ = false, monitor_armed_ = false, monitor_update_ = false, monitor_read_ = false;
  int64_t mon_passes_ = 0;  // training passes in this interval so far (picks the steps read)
  int64_t mon_slices_ = 0;  // of which read (moves the output slice)
  Monitor mon_;
  Buffer<T> mon_before_;  // the parameters before a monitored update

  const KernelTable<T>* k_;   // fp32/fp64 kernels, or the mixed-precision table (set_precision)
  std::string precision_ = std::is_same<T, float>::value ? "float32" : "float64";
  Shape input_shape_;
  int64_t input_size_;
  std::vector<std::unique_ptr<Layer<T>>> layers_;
  std::vector<std::vector<int>> inputs_;   // per node: input tensors (-1: the model input)
  std::vector<int> root_;                  // per node: the node whose buffer its output is (aliases)
  std::vector<int> last_consumer_;         // per node: the last node reading its output, or -1
  std::vector<int64_t> key_;               // per node: its place in the flat buffers' layout (finalize)
  std::vector<int> fold_into_;             // per node: the BatchNormalization it folds into, or -1
  std::vector<int> fold_from_;             // per node: the convolution folded into it, or -1
  std::vector<char> fold_ok_;              // per convolution: its fold is safe in the activation plan
  std::vector<int> relu_from_;             // per node: the ReLU producer whose derivative it applies, or -1
  std::vector<int> pool_into_;             // per convolution: the pooling right after it (its only reader), or -1
  std::vector<int> pre_into_;              // per node: the reader that can apply it as a prologue, or -1
  std::vector<char> skipped_;              // per node, last pass: 1 no output (folded), 2 computed with it
                                           // (fold or pooling), 3 no output (pooled per image), 4 no
                                           // output (applied by its reader as a prologue)
  Buffer<T> fold_affine_;                  // scale and shift of the BatchNormalization being folded
  bool folding_ = true;
  bool pool_fusion_ = true;
  bool prologue_fusion_ = true;
  bool finalized_ = false;
  int64_t num_params_ = 0, num_state_ = 0;
  Buffer<T> params_, grads_, m_, v_, w_, state_;  // m_, v_, w_: optimizer slots
  std::vector<std::pair<int64_t, int64_t>> segments_;  // trainable ranges of the flat buffers

  LossParams loss_{LossKind::mse, 1e-7};
  bool loss_set_ = false;
  size_t train_layers_ = 0;
  OptimizerConfig opt_;
  bool opt_set_ = false;
  int64_t iterations_ = 0;
  int64_t nadam_t_ = 0;         // Nadam: the product mu_1 ... mu_t, cached for t = nadam_t_
  double nadam_product_ = 1.0;
  void reset_optimizer_state();
  uint64_t rng_stream_ = 0;
  uint64_t pass_step() const { return uint64_t(iterations_) ^ (rng_stream_ << 40); }

  int planned_N_ = 0, planned_threads_ = 0;
  // Activation buffers: node r's output lives in aslots_[aslot_[r]] (-1 for views). Outputs that
  // no backward pass reads share slots once their last reader has run (plan_activations).
  std::vector<int> aslot_;
  std::vector<int64_t> aslot_size_;  // per-sample elements
  std::vector<Buffer<T>> aslots_;
  std::vector<int> aslot_owner_;     // per slot: the node whose output it holds since the last pass
  std::vector<char> keep_;           // per node: kept whole-pass at the caller's request (forward)
  T* out_ptr(int r) { return aslots_[aslot_[r]].data(); }
  // Outputs recomputed for their readers' backward instead of kept (Layer::can_recompute_output):
  // per node a flag; in a training step each is computed into an activation slot whose forward
  // contents are dead by then, once for all its readers where a slot allows (plan_activations).
  std::vector<char> recomputed_;
  std::vector<int> rshared_;     // per recomputed output: the slot its readers share, or -1
  std::vector<int> rslot_;       // per reader: the slot of its own recomputed input (rshared_ -1)
  std::vector<char> rdone_;      // per recomputed output: computed in this backward pass
  int64_t recompute_size_ = 0;  // per sample, the largest recomputed output
  Buffer<T> recompute_;         // their buffer outside training steps (run_backward)
  // Gradient buffers: node t's output gradient lives in dslots_[gslot_[t]]; slots are shared by
  // tensors whose gradients are never live at the same time (plan_gradients).
  std::vector<int> gslot_;
  std::vector<int64_t> slot_size_;  // per-sample elements
  std::vector<Buffer<T>> dslots_;
  Buffer<T> acc_tmp_;               // fresh dx of a layer that cannot accumulate, before the add
  int64_t acc_tmp_size_ = 0;
  Buffer<T> input_copy_, ws_;
  std::vector<const T*> xptr_;      // per node, its input pointers (offsets in xoff_)
  std::vector<T*> dxptr_;
  std::vector<char> dxacc_;
  std::vector<size_t> xoff_;
  std::vector<char> gwritten_;      // per node: its output gradient holds a value this pass
  std::vector<char> need_;          // per node: its output needs a gradient this pass
  std::vector<int> edges_;          // per root (index + 1; 0: the model input): non-view readers
  const T* x_ = nullptr;  // input of the last forward pass
  int last_N_ = 0;
  size_t last_upto_ = 0;
  bool state_pending_ = false;
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
