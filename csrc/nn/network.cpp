#include "nn/network.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <cmath>
#include <cstring>

#include "core/check.h"
#include "core/parallel.h"
#include "core/random.h"

namespace cnnbp {

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Truncated at two standard deviations, as Keras's variance-scaling initializers; the constant
// restores the requested variance after truncation.
double truncated_normal(uint64_t seed, uint64_t stream, uint64_t i) {
  for (uint64_t attempt = 0;; ++attempt) {
    double z = normal01(seed, stream, i * 64 + attempt);
    if (std::fabs(z) <= 2.0 || attempt == 63) return std::fabs(z) <= 2.0 ? z : 0.0;
  }
}

template <typename T>
void init_param(T* dst, const ParamInfo& pi, uint64_t seed, uint64_t stream) {
  const int64_t n = pi.size;
  const double fi = double(pi.fan_in), fo = double(pi.fan_out);
  const std::string& k = pi.init;
  auto uniform = [&](double limit) {
    for (int64_t i = 0; i < n; ++i) dst[i] = T((2.0 * uniform01(seed, stream, i) - 1.0) * limit);
  };
  auto normal = [&](double std) {
    const double s = std / 0.87962566103423978;
    for (int64_t i = 0; i < n; ++i) dst[i] = T(s * truncated_normal(seed, stream, i));
  };
  if (k == "zeros") for (int64_t i = 0; i < n; ++i) dst[i] = T(0);
  else if (k == "ones") for (int64_t i = 0; i < n; ++i) dst[i] = T(1);
  else if (k == "glorot_uniform") uniform(std::sqrt(6.0 / (fi + fo)));
  else if (k == "glorot_normal") normal(std::sqrt(2.0 / (fi + fo)));
  else if (k == "he_uniform") uniform(std::sqrt(6.0 / fi));
  else if (k == "he_normal") normal(std::sqrt(2.0 / fi));
  else if (k == "lecun_uniform") uniform(std::sqrt(3.0 / fi));
  else if (k == "lecun_normal") normal(std::sqrt(1.0 / fi));
  else
    throw std::invalid_argument("unknown initializer '" + k +
                                "'; expected one of glorot_uniform, glorot_normal, he_uniform, he_normal, "
                                "lecun_uniform, lecun_normal, zeros, ones");
}

}  // namespace

namespace {
std::atomic<int64_t> g_live_networks{0};
}  // namespace
int64_t live_networks() { return g_live_networks.load(); }

template <typename T>
Network<T>::~Network() {
  g_live_networks.fetch_sub(1);
  layers_.clear();
#ifdef __GLIBC__
  // Hand the heap memory of this network (and what Python freed with its model) back to the
  // system: without it, building and dropping 100 models grew the resident size by ~20 MiB of
  // free-but-kept heap. A network is destroyed rarely, so the cost does not matter.
  malloc_trim(0);
#endif
}

template <typename T>
Network<T>::Network(const Shape& input_shape)
    : k_(kernels<T>()), input_shape_(input_shape), input_size_(shape_numel(input_shape)) {
  g_live_networks.fetch_add(1);
  CNNBP_CHECK(!input_shape.empty(), "Input: expected a shape with at least one axis, got ()");
  for (int d : input_shape) CNNBP_CHECK(d > 0, "Input: expected positive dimensions, got shape ", shape_str(input_shape));
}

template <typename T>
void Network<T>::add(std::unique_ptr<Layer<T>> layer) {
  CNNBP_CHECK(!finalized_, "cannot add layer '", layer->name, "' after the model was built");
  CNNBP_CHECK(layer->in_shape == output_shape(), layer->name, ": expected input shape ",
              shape_str(output_shape(), true), ", got ", shape_str(layer->in_shape, true));
  layers_.push_back(std::move(layer));
}

template <typename T>
void Network<T>::finalize(uint64_t seed) {
  CNNBP_CHECK(!finalized_, "model already built");
  int64_t off = 0;
  for (auto& l : layers_)
    for (auto& p : l->params) {
      p.offset = off;
      // Keep each parameter 64-byte aligned inside the flat buffer.
      off += (p.size + 15) / 16 * 16;
    }
  num_params_ = off;
  params_.reserve(size_t(off) + 16);
  grads_.reserve(size_t(off) + 16);
  params_.zero();
  grads_.zero();
  for (auto& l : layers_) {
    l->pbase = params_.data();
    l->gbase = grads_.data();
  }
  finalized_ = true;
  train_layers_ = layers_.size();
  initialize(seed);
}

template <typename T>
void Network<T>::initialize(uint64_t seed) {
  for (size_t li = 0; li < layers_.size(); ++li)
    for (size_t pi = 0; pi < layers_[li]->params.size(); ++pi) {
      const ParamInfo& p = layers_[li]->params[pi];
      init_param(params_.data() + p.offset, p, seed, uint64_t(li) * 16 + pi);
    }
  m_.zero();
  v_.zero();
  iterations_ = 0;
}

template <typename T>
int Network<T>::output_classes() const {
  return int(shape_numel(train_layers_ ? layers_[train_layers_ - 1]->out_shape : input_shape_));
}

template <typename T>
void Network<T>::set_loss(LossKind kind, double eps, bool fuse) {
  CNNBP_CHECK(finalized_, "model is not built");
  loss_ = {kind, eps};
  train_layers_ = layers_.size();
  if (fuse && !layers_.empty()) {
    const int act = activation_kind(*layers_.back());
    const Shape& out = layers_.back()->out_shape;
    if (act == int(Act::softmax) && out.size() == 1 && (kind == LossKind::cce || kind == LossKind::sparse_cce)) {
      loss_.kind = kind == LossKind::cce ? LossKind::softmax_ce : LossKind::sparse_softmax_ce;
      train_layers_ -= 1;
    } else if (act == int(Act::sigmoid) && kind == LossKind::bce) {
      loss_.kind = LossKind::bce_logits;
      train_layers_ -= 1;
    }
  }
  loss_set_ = true;
}

template <typename T>
int64_t Network<T>::opt_state_count() const {
  if (!opt_set_) return 0;
  if (opt_.kind == OptKind::adam) return 2;
  return opt_.momentum != 0.0 ? 1 : 0;
}

template <typename T>
void Network<T>::set_optimizer(const OptimizerConfig& cfg) {
  CNNBP_CHECK(finalized_, "model is not built");
  CNNBP_CHECK(cfg.lr >= 0 && std::isfinite(cfg.lr), "optimizer: expected learning_rate >= 0, got ", cfg.lr);
  CNNBP_CHECK(cfg.momentum >= 0 && cfg.momentum < 1.0 + 1e-12, "SGD: expected 0 <= momentum <= 1, got ", cfg.momentum);
  CNNBP_CHECK(cfg.weight_decay >= 0, "optimizer: expected weight_decay >= 0, got ", cfg.weight_decay);
  CNNBP_CHECK(!cfg.nesterov || cfg.momentum > 0, "SGD: nesterov=True needs momentum > 0");
  CNNBP_CHECK(cfg.beta1 >= 0 && cfg.beta1 < 1, "Adam: expected 0 <= beta_1 < 1, got ", cfg.beta1);
  CNNBP_CHECK(cfg.beta2 >= 0 && cfg.beta2 < 1, "Adam: expected 0 <= beta_2 < 1, got ", cfg.beta2);
  CNNBP_CHECK(cfg.eps >= 0, "Adam: expected epsilon >= 0, got ", cfg.eps);
  const bool same_kind = opt_set_ && opt_.kind == cfg.kind;
  opt_ = cfg;
  if (!same_kind) {
    m_.reserve(size_t(num_params_) + 16);
    m_.zero();
    if (cfg.kind == OptKind::adam) {
      v_.reserve(size_t(num_params_) + 16);
      v_.zero();
    }
    iterations_ = 0;
  }
  opt_set_ = true;
}

template <typename T>
void Network<T>::plan(int N) {
  const int nt = get_num_threads();
  if (N <= planned_N_ && nt == planned_threads_) return;
  const int cap = N > planned_N_ ? N : planned_N_;
  acts_.resize(layers_.size());
  int64_t max_act = input_size_, ws = 0;
  for (size_t i = 0; i < layers_.size(); ++i) {
    Layer<T>& l = *layers_[i];
    if (!l.is_alias()) acts_[i].reserve(size_t(cap) * l.out_size);
    l.plan(k_, cap);
    max_act = std::max(max_act, l.out_size);
    ws = std::max(ws, l.workspace(k_, cap, nt));
  }
  dbuf_[0].reserve(size_t(cap) * max_act);
  dbuf_[1].reserve(size_t(cap) * max_act);
  ws_.reserve(size_t(ws) + 16);
  planned_N_ = cap;
  planned_threads_ = nt;
}

template <typename T>
const T* Network<T>::act_ptr(size_t i) const {
  // Output of layer i; an alias layer (Flatten) shares its input's storage.
  while (true) {
    if (!layers_[i]->is_alias()) return acts_[i].data();
    if (i == 0) return x_;
    --i;
  }
}
template <typename T>
T* Network<T>::act_ptr(size_t i) {
  return const_cast<T*>(static_cast<const Network<T>*>(this)->act_ptr(i));
}

template <typename T>
const T* Network<T>::activation(size_t i) const {
  CNNBP_CHECK_INDEX(i < last_upto_, "activation: layer index ", i, " out of range (last pass ran ", last_upto_, " layers)");
  const T* p = act_ptr(i);
  // A leading Flatten shares the caller's input, which only forward() keeps a copy of.
  CNNBP_CHECK(p != x_ || backward_ready_, "activation: layer ", i, " is a view of the input; call forward(x) first");
  return p;
}

template <typename T>
void Network<T>::set_profiling(bool on) {
  profiling_ = on;
  prof_ = Profile();
  prof_.forward.assign(layers_.size(), 0.0);
  prof_.backward.assign(layers_.size(), 0.0);
}

template <typename T>
void Network<T>::check_finite(const T* p, int64_t n, const Layer<T>& l, const char* what) const {
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(p[i]))
      throw NumericalError(detail::concat("layer '", l.name, "' (", l.kind(), ") produced a non-finite ", what, " (",
                                          std::isnan(p[i]) ? "nan" : (p[i] > 0 ? "inf" : "-inf"), " at element ", i,
                                          ") at step ", iterations_ + 1,
                                          "; weights were not updated"));
}

template <typename T>
void Network<T>::run_forward(const T* x, int N, bool training, size_t upto) {
  PassContext c{get_num_threads(), pass_step()};
  x_ = x;
  backward_ready_ = false;
  for (size_t i = 0; i < upto; ++i) {
    Layer<T>& l = *layers_[i];
    if (l.is_alias()) continue;
    const T* in = i == 0 ? x : act_ptr(i - 1);
    const double t0 = profiling_ ? now_s() : 0.0;
    l.forward(k_, c, N, in, acts_[i].data(), ws_.data(), training);
    if (profiling_) prof_.forward[i] += now_s() - t0;
    if (check_numerics_ && training) check_finite(acts_[i].data(), N * l.out_size, l, "output");
  }
  last_N_ = N;
  last_upto_ = upto;
}

template <typename T>
void Network<T>::run_backward(int N, size_t from, T* input_grad, size_t stop, const GradsReady* ready) {
  // dbuf_[cur] holds d(loss)/d(output of layer from-1); layers [stop, from) run; input_grad, when
  // given, receives d/d(input of layer stop).
  PassContext c{get_num_threads(), pass_step()};
  int cur = 0;
  for (size_t i = from; i-- > stop;) {
    Layer<T>& l = *layers_[i];
    if (l.is_alias()) {
      if (i == stop && input_grad) std::memcpy(input_grad, dbuf_[cur].data(), sizeof(T) * N * l.in_size);
      continue;
    }
    const T* in = i == 0 ? x_ : act_ptr(i - 1);
    T* dx = i > stop ? dbuf_[1 - cur].data() : input_grad;
    const double t0 = profiling_ ? now_s() : 0.0;
    l.backward(k_, c, N, in, acts_[i].data(), dbuf_[cur].data(), dx, ws_.data());
    if (profiling_) prof_.backward[i] += now_s() - t0;
    if (check_numerics_) {
      for (size_t p = 0; p < l.params.size(); ++p) check_finite(l.g(p), l.params[p].size, l, "parameter gradient");
      if (dx) check_finite(dx, N * l.in_size, l, "input gradient");
    }
    if (ready && !l.params.empty()) {
      int64_t b = l.params[0].offset, e = b;
      for (const ParamInfo& p : l.params) {
        b = std::min(b, p.offset);
        e = std::max(e, p.offset + p.size);
      }
      (*ready)(b, e);
    }
    cur = 1 - cur;
  }
}

template <typename T>
void Network<T>::check_target(const T* target, int N) const {
  if (!loss_is_sparse(loss_.kind)) return;
  const int K = output_classes();
  for (int n = 0; n < N; ++n) {
    const T t = target[n];
    CNNBP_CHECK(t >= T(0) && t < T(K) && t == T(int64_t(t)), "labels: expected integer class labels in [0, ", K,
                "), got ", double(t), " at index ", n);
  }
}

template <typename T>
StepResult Network<T>::compute_loss(const T* target, int N, bool want_grad) {
  const size_t last = train_layers_ - 1;
  const T* out = act_ptr(last);
  const int K = output_classes();
  const double loss = k_.loss(want_grad ? dbuf_[0].data() : nullptr, out, target, N, K, loss_);
  const bool logits = loss_.kind == LossKind::softmax_ce || loss_.kind == LossKind::sparse_softmax_ce ||
                      loss_.kind == LossKind::bce_logits;
  const int64_t correct = k_.count_correct(out, target, N, K, loss_is_sparse(loss_.kind), logits ? 0.0 : 0.5);
  return {loss, correct};
}

template <typename T>
StepResult Network<T>::train_step(const T* x, const T* target, int N) {
  CNNBP_CHECK(loss_set_ && opt_set_, "model is not compiled: call compile(optimizer=..., loss=...) first");
  CNNBP_CHECK(N > 0, "train_step: expected a non-empty batch");
  CNNBP_CHECK(!layers_.empty(), "train_step: the model has no layers");
  check_target(target, N);
  plan(N);
  run_forward(x, N, true, train_layers_);
  double t0 = profiling_ ? now_s() : 0.0;
  StepResult r = compute_loss(target, N, true);
  if (profiling_) prof_.loss += now_s() - t0;
  if (!std::isfinite(r.loss))
    throw NumericalError(detail::concat("loss is ", std::isnan(r.loss) ? "nan" : (r.loss > 0 ? "inf" : "-inf"),
                                        " at step ", iterations_ + 1,
                                        "; weights were not updated"));
  run_backward(N, train_layers_, nullptr);
  t0 = profiling_ ? now_s() : 0.0;
  apply_update();
  if (profiling_) {
    prof_.update += now_s() - t0;
    ++prof_.steps;
  }
  return r;
}

template <typename T>
StepResult Network<T>::compute_gradients(const T* x, const T* target, int N, double grad_scale,
                                         const GradsReady& grads_ready) {
  CNNBP_CHECK(loss_set_ && opt_set_, "model is not compiled: call compile(optimizer=..., loss=...) first");
  CNNBP_CHECK(N > 0, "compute_gradients: expected a non-empty batch");
  CNNBP_CHECK(!layers_.empty(), "compute_gradients: the model has no layers");
  CNNBP_CHECK(std::isfinite(grad_scale), "compute_gradients: grad_scale must be finite, got ", grad_scale);
  check_target(target, N);
  plan(N);
  run_forward(x, N, true, train_layers_);
  StepResult r = compute_loss(target, N, true);
  if (grad_scale != 1.0) {
    // Backward is linear in the loss gradient: scaling it scales every parameter gradient, so
    // each layer's gradients are final (and can be reduced) as soon as its backward is done.
    T* d = dbuf_[0].data();
    const int64_t n = int64_t(N) * layers_[train_layers_ - 1]->out_size;
    const T s = T(grad_scale);
    for (int64_t i = 0; i < n; ++i) d[i] *= s;
  }
  run_backward(N, train_layers_, nullptr, 0, grads_ready ? &grads_ready : nullptr);
  return r;
}

template <typename T>
void Network<T>::forward(const T* x, int N, bool training) {
  CNNBP_CHECK(N > 0, "forward: expected a non-empty batch");
  plan(N);
  input_copy_.reserve(size_t(planned_N_) * input_size_);
  std::memcpy(input_copy_.data(), x, sizeof(T) * N * input_size_);
  run_forward(input_copy_.data(), N, training, layers_.size());
  backward_ready_ = true;
}

template <typename T>
StepResult Network<T>::loss_backward(const T* target, int N, T* input_grad) {
  CNNBP_CHECK(loss_set_, "model is not compiled: no loss set");
  CNNBP_CHECK(backward_ready_, "backward: call forward(x) first (train_step, evaluate and predict do not keep "
              "what backward needs)");
  CNNBP_CHECK(last_N_ == N && last_upto_ == layers_.size() && N > 0,
              "backward: expected a batch of ", last_N_, " (the last forward pass), got ", N);
  check_target(target, N);
  StepResult r = compute_loss(target, N, true);
  run_backward(N, train_layers_, input_grad);
  return r;
}

template <typename T>
void Network<T>::backward_from_output(const T* dout, int N, T* input_grad) {
  CNNBP_CHECK(backward_ready_, "backward: call forward(x) first (train_step, evaluate and predict do not keep "
              "what backward needs)");
  CNNBP_CHECK(last_N_ == N && last_upto_ == layers_.size() && N > 0,
              "backward: expected a batch of ", last_N_, " (the last forward pass), got ", N);
  if (layers_.empty()) {
    if (input_grad) std::memcpy(input_grad, dout, sizeof(T) * N * input_size_);
    return;
  }
  std::memcpy(dbuf_[0].data(), dout, sizeof(T) * N * layers_.back()->out_size);
  run_backward(N, layers_.size(), input_grad);
}

template <typename T>
void Network<T>::backward_between(const T* dout, int N, size_t from, size_t stop, T* grad) {
  CNNBP_CHECK(backward_ready_, "backward: call forward(x) first (train_step, evaluate and predict do not keep "
              "what backward needs)");
  CNNBP_CHECK(last_N_ == N && last_upto_ == layers_.size() && N > 0,
              "backward: expected a batch of ", last_N_, " (the last forward pass), got ", N);
  CNNBP_CHECK_INDEX(stop < from && from <= layers_.size(), "backward_between: need 0 <= stop < from <= ",
                    layers_.size(), ", got stop ", stop, ", from ", from);
  std::memcpy(dbuf_[0].data(), dout, sizeof(T) * N * layers_[from - 1]->out_size);
  run_backward(N, from, grad, stop);
}

template <typename T>
void Network<T>::apply_update() {
  CNNBP_CHECK(opt_set_, "model is not compiled: no optimizer set");
  ++iterations_;
  if (opt_.kind == OptKind::sgd) {
    SgdParams h{opt_.lr, opt_.momentum, opt_.weight_decay, opt_.nesterov};
    k_.sgd_update(params_.data(), grads_.data(), m_.data(), num_params_, h);
  } else {
    AdamParams h{opt_.lr, opt_.beta1, opt_.beta2, opt_.eps, opt_.weight_decay, iterations_};
    k_.adam_update(params_.data(), grads_.data(), m_.data(), v_.data(), num_params_, h);
  }
}

template <typename T>
void Network<T>::predict(const T* x, int N, T* out) {
  if (N == 0) return;
  plan(N);
  run_forward(x, N, false, layers_.size());
  const int64_t n = int64_t(N) * shape_numel(output_shape());
  std::memcpy(out, layers_.empty() ? x : act_ptr(layers_.size() - 1), sizeof(T) * n);
}

template <typename T>
StepResult Network<T>::evaluate(const T* x, const T* target, int N) {
  CNNBP_CHECK(loss_set_, "model is not compiled: call compile(...) before evaluate");
  CNNBP_CHECK(N > 0, "evaluate: expected a non-empty batch");
  CNNBP_CHECK(!layers_.empty(), "evaluate: the model has no layers");
  check_target(target, N);
  plan(N);
  run_forward(x, N, false, train_layers_);
  return compute_loss(target, N, false);
}

template class Network<float>;
template class Network<double>;

}  // namespace cnnbp
