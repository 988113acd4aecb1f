// BatchNormalization and LayerNormalization over the last axis (Keras's axis=-1 on channels-last
// tensors).
// BatchNormalization:
// Training (and trainable): normalise with the batch statistics; the step's backward includes
// their dependence on the input; the moving statistics (state, never trained) are blended in only
// when the step succeeds (commit_state). Inference, or a frozen layer: the moving statistics.
// A following ReLU may be fused in (activation "relu"): normalise and clamp in one pass, and the
// backward masks the incoming gradient inside its own two passes, with the sign of x*scale +
// shift (the output is not read). The output can be recomputed from the input (kept for the
// backward anyway), so a network need not keep it for the convolution that reads it; a training
// step need not even store it when that convolution applies scale, shift and ReLU as it loads the
// input (gives_prologue; Network::run_forward).
// With a second input, the layer is a BatchNormalization and the Add that is its only reader
// (the residual connection of a ResNet block, Model builds it so): y = bn(x) + residual, then the
// ReLU if fused, in one pass; the normalised tensor is never stored. The backward masks dy with
// the sign of x*scale + shift + residual (the output is not read, so it too can be recomputed
// rather than kept) and sends it to the residual as the Add's backward does, in its own passes.
#include <cmath>
#include <vector>

#include "core/check.h"
#include "nn/layers.h"
#include "nn/registry.h"

namespace cnnbp {

namespace {

template <typename T>
class BatchNormLayer : public Layer<T> {
 public:
  BatchNormLayer(const std::string& name, const std::vector<Shape>& ins, const std::vector<std::string>& in_names,
                 const BatchNormConfig& c)
      : cfg_(c), residual_(ins.size() == 2) {
    const Shape& in = ins.at(0);
    CNNBP_CHECK(!in.empty(), name, " (BatchNormalization): expected an input with a channel axis");
    CNNBP_CHECK(!residual_ || ins[1] == in, name, " (BatchNormalization + Add): the residual must have the shape of ",
                "the normalised input, got ", shape_str(in, true), " from '", in_names.at(0), "' and ",
                shape_str(ins[1], true), " from '", in_names.at(1), "'");
    CNNBP_CHECK(c.momentum >= 0 && c.momentum <= 1, name, " (BatchNormalization): momentum must be in [0, 1], got ",
                c.momentum);
    CNNBP_CHECK(c.epsilon > 0 && std::isfinite(c.epsilon), name, " (BatchNormalization): epsilon must be > 0, got ",
                c.epsilon);
    CNNBP_CHECK(c.act == Act::linear || c.act == Act::relu, name,
                " (BatchNormalization): only a ReLU can be fused in (activation 'linear' or 'relu')");
    set_shapes(*this, name, in, in);
    this->in_shapes = ins;
    C_ = in.back();
    rows_ = shape_numel(in) / C_;
    if (c.scale) this->params.push_back({"gamma", {C_}, 0, C_, c.gamma_init, C_, C_});
    if (c.center) this->params.push_back({"beta", {C_}, 0, C_, c.beta_init, C_, C_});
    this->state.push_back({"moving_mean", {C_}, 0, C_, c.mean_init, C_, C_});
    this->state.push_back({"moving_variance", {C_}, 0, C_, c.var_init, C_, C_});
  }
  // The per-channel buffers are allocated when the network plans (after its memory budget check),
  // never in the constructor: a layer built on a huge channel axis must be refusable cleanly.
  void plan(const KernelTable<T>&, int) override {
    for (Buffer<T>* b : {&mean_, &var_, &invstd_, &scale_, &shift_}) {
      if (b->capacity() >= size_t(C_)) continue;
      b->reserve(size_t(C_));
      b->zero();
    }
  }
  const char* kind() const override { return "BatchNormalization"; }
  // The ReLU's sign comes from the inputs (x, and the residual after which it applies).
  bool backward_reads_output() const override { return false; }
  bool backward_reads_input(int j) const override { return j == 0 || cfg_.act == Act::relu; }
  bool can_recompute_output() const override { return true; }
  bool can_overwrite_input(int j) const override { return residual_ && j == 1; }  // (batchnorm_apply's add)
  void recompute_output(const KernelTable<T>& k, int N, const T* const* xs, T* y) const override {
    // The forward's own kernel and coefficients: the same bits.
    k.batchnorm_apply(y, xs[0], scale_.data(), shift_.data(), residual_ ? xs[1] : nullptr, N * rows_, C_,
                      cfg_.act == Act::relu);
  }
  int64_t workspace(const KernelTable<T>& k, int N, int nthreads) const override {
    return k.batchnorm_workspace(N * rows_, C_, nthreads);
  }
  int64_t plan_bytes(const KernelTable<T>&, int) const override { return 5 * int64_t(C_) * sizeof(T); }
  void forward_n(const KernelTable<T>& k, const PassContext&, int N, const T* const* xs, T* y, T* ws,
                 bool training) override {
    const T* x = xs[0];
    const int64_t M = N * rows_;
    batch_ = training && this->trainable;
    T* mean = mean_.data();
    T* var = var_.data();
    if (batch_) {
      k.batchnorm_stats(mean, var, x, M, C_, ws);
      measured_ = true;
    } else {
      for (int c = 0; c < C_; ++c) {
        mean[c] = this->s(0)[c];
        var[c] = this->s(1)[c];
      }
    }
    affine(mean, var, invstd_.data(), scale_.data(), shift_.data());
    if (y)  // (null: the reader applies scale and shift as it loads x; see gives_prologue)
      k.batchnorm_apply(y, x, scale_.data(), shift_.data(), residual_ ? xs[1] : nullptr, M, C_,
                        cfg_.act == Act::relu);
  }
  bool gives_prologue() const override { return !residual_ && cfg_.act == Act::relu; }
  const T* prologue_scale() const override { return scale_.data(); }
  const T* prologue_shift() const override { return shift_.data(); }
  bool accumulates() const override { return true; }
  void backward_n(const KernelTable<T>& k, const PassContext&, int N, const T* const* xs, const T* y, T* dy,
                  T* const* dxs, const bool* accumulate, T* ws) override {
    const bool train = this->trainable;
    T* dgamma = train && cfg_.scale ? this->g(0) : nullptr;
    T* dbeta = train && cfg_.center ? this->g(cfg_.scale ? 1 : 0) : nullptr;
    const bool relu = cfg_.act == Act::relu;
    const int64_t M = N * rows_;
    (void)y;
    // The ReLU's backward inside the kernel's two passes; with a residual, its gradient (the
    // Add's backward: the masked dy) is written in the second. When the residual is the input
    // itself (one gradient buffer for both), a second call adds it after the first wrote dx.
    const T* rs = relu ? scale_.data() : nullptr;
    const T* rb = relu ? shift_.data() : nullptr;
    const T* ra = relu && residual_ ? xs[1] : nullptr;
    T* dres = residual_ ? dxs[1] : nullptr;
    const bool same = dres && dres == dxs[0];
    k.batchnorm_backward(dxs[0], dgamma, dbeta, dy, nullptr, rs, rb, ra, same ? nullptr : dres,
                         residual_ && accumulate[1], xs[0], mean_.data(), invstd_.data(),
                         cfg_.scale ? this->w(0) : nullptr, M, C_, batch_, ws, accumulate[0]);
    if (same)
      k.batchnorm_backward(nullptr, nullptr, nullptr, dy, nullptr, rs, rb, ra, dres, true, xs[0], mean_.data(),
                           invstd_.data(), nullptr, M, C_, false, ws, false);
  }
  bool batch_statistics(double* mean_abs, double* mean_var) const override {
    if (!batch_ || mean_.capacity() < size_t(C_)) return false;
    double a = 0, v = 0;
    for (int c = 0; c < C_; ++c) {
      a += std::fabs(double(mean_.data()[c]));
      v += double(var_.data()[c]);
    }
    *mean_abs = a / C_;
    *mean_var = v / C_;
    return true;
  }
  bool has_inference_affine() const override { return true; }  // (the residual is added after it)
  bool inference_affine(T* scale, T* shift, Act* act) const override {
    std::vector<T> inv(size_t(C_), T(0));
    affine(this->s(0), this->s(1), inv.data(), scale, shift);
    *act = cfg_.act;
    return true;
  }
  void commit_state(const KernelTable<T>&) override {
    if (!measured_) return;
    // Keras: moving = moving * momentum + batch * (1 - momentum), with the biased batch variance.
    const T m = T(cfg_.momentum);
    T* mm = this->s(0);
    T* mv = this->s(1);
    for (int c = 0; c < C_; ++c) {
      mm[c] = mm[c] * m + mean_.data()[c] * (T(1) - m);
      mv[c] = mv[c] * m + var_.data()[c] * (T(1) - m);
    }
    measured_ = false;
  }

 private:
  // y = x*scale + shift normalises with (mean, var): scale = gamma/sqrt(var + eps), shift =
  // beta - mean*scale.
  void affine(const T* mean, const T* var, T* invstd, T* scale, T* shift) const {
    const T* gamma = cfg_.scale ? this->w(0) : nullptr;
    const T* beta = cfg_.center ? this->w(cfg_.scale ? 1 : 0) : nullptr;
    for (int c = 0; c < C_; ++c) {
      const T inv = T(1) / std::sqrt(var[c] + T(cfg_.epsilon));
      invstd[c] = inv;
      scale[c] = (gamma ? gamma[c] : T(1)) * inv;
      shift[c] = (beta ? beta[c] : T(0)) - mean[c] * scale[c];
    }
  }

  BatchNormConfig cfg_;
  bool residual_;
  int C_ = 0;
  int64_t rows_ = 1;
  bool batch_ = false;     // the last forward normalised with batch statistics
  bool measured_ = false;  // mean_/var_ hold batch statistics not yet committed
  Buffer<T> mean_, var_, invstd_, scale_, shift_;
};

// LayerNormalization over the last axis: per row mean and variance of the sample itself, the same
// in training and inference; gamma and beta per channel.
template <typename T>
class LayerNormLayer : public Layer<T> {
 public:
  LayerNormLayer(const std::string& name, const Shape& in, double eps, bool center, bool scale,
                 const std::string& gamma_init, const std::string& beta_init)
      : eps_(eps), center_(center), scale_(scale) {
    CNNBP_CHECK(!in.empty(), name, " (LayerNormalization): expected an input with a feature axis");
    CNNBP_CHECK(eps > 0 && std::isfinite(eps), name, " (LayerNormalization): epsilon must be > 0, got ", eps);
    set_shapes(*this, name, in, in);
    C_ = in.back();
    rows_ = shape_numel(in) / C_;
    if (scale) this->params.push_back({"gamma", {C_}, 0, C_, gamma_init, C_, C_});
    if (center) this->params.push_back({"beta", {C_}, 0, C_, beta_init, C_, C_});
  }
  const char* kind() const override { return "LayerNormalization"; }
  bool backward_reads_output() const override { return false; }
  void plan(const KernelTable<T>&, int N) override {
    mean_.reserve(size_t(N) * size_t(rows_));
    invstd_.reserve(size_t(N) * size_t(rows_));
  }
  int64_t plan_bytes(const KernelTable<T>&, int N) const override { return 2 * int64_t(N) * rows_ * int64_t(sizeof(T)); }
  void forward(const KernelTable<T>& k, const PassContext&, int N, const T* x, T* y, T*, bool) override {
    k.layernorm_forward(y, mean_.data(), invstd_.data(), x, scale_ ? this->w(0) : nullptr,
                        center_ ? this->w(scale_ ? 1 : 0) : nullptr, N * rows_, C_, eps_);
  }
  bool accumulates() const override { return true; }
  void backward_n(const KernelTable<T>& k, const PassContext&, int N, const T* const* xs, const T*, T* dy,
                  T* const* dxs, const bool* accumulate, T*) override {
    const bool train = this->trainable;
    T* dgamma = train && scale_ ? this->g(0) : nullptr;
    T* dbeta = train && center_ ? this->g(scale_ ? 1 : 0) : nullptr;
    k.layernorm_backward(dxs[0], dgamma, dbeta, dy, xs[0], mean_.data(), invstd_.data(),
                         scale_ ? this->w(0) : nullptr, N * rows_, C_, accumulate[0]);
  }

 private:
  double eps_;
  bool center_, scale_;
  int C_ = 0;
  int64_t rows_ = 1;
  Buffer<T> mean_, invstd_;
};

}  // namespace

template <typename T>
std::unique_ptr<Layer<T>> make_layer_norm(const std::string& name, const Shape& in, double epsilon, bool center,
                                          bool scale, const std::string& gamma_init, const std::string& beta_init) {
  return std::make_unique<LayerNormLayer<T>>(name, in, epsilon, center, scale, gamma_init, beta_init);
}
template std::unique_ptr<Layer<float>> make_layer_norm<float>(const std::string&, const Shape&, double, bool, bool,
                                                              const std::string&, const std::string&);
template std::unique_ptr<Layer<double>> make_layer_norm<double>(const std::string&, const Shape&, double, bool, bool,
                                                                const std::string&, const std::string&);

template <typename T>
std::unique_ptr<Layer<T>> make_batch_norm(const std::string& name, const std::vector<Shape>& in,
                                          const std::vector<std::string>& in_names, const BatchNormConfig& cfg) {
  return std::make_unique<BatchNormLayer<T>>(name, in, in_names, cfg);
}

template std::unique_ptr<Layer<float>> make_batch_norm<float>(const std::string&, const std::vector<Shape>&,
                                                              const std::vector<std::string>&, const BatchNormConfig&);
template std::unique_ptr<Layer<double>> make_batch_norm<double>(const std::string&, const std::vector<Shape>&,
                                                                const std::vector<std::string>&, const BatchNormConfig&);

}  // namespace cnnbp
