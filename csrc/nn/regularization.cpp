// Regularisation layers besides Dropout (layers.cpp): SpatialDropout2D (whole channels dropped per
// sample) and GaussianNoise (additive noise). Both act only while training; their draws come from
// (seed, step, index), as dropout's.
#include <cmath>

#include "core/check.h"
#include "nn/layers.h"
#include "nn/registry.h"

namespace cnnbp {

namespace {

template <typename T>
class SpatialDropoutLayer : public Layer<T> {
 public:
  SpatialDropoutLayer(const std::string& name, const Shape& in, double rate, uint64_t seed) : rate_(rate), seed_(seed) {
    require_rank3(name, "SpatialDropout2D", in);
    CNNBP_CHECK(rate >= 0.0 && rate < 1.0, name, " (SpatialDropout2D): expected 0 <= rate < 1, got ", rate);
    set_shapes(*this, name, in, in);
  }
  const char* kind() const override { return "SpatialDropout2D"; }
  bool backward_reads_inputs() const override { return false; }  // its mask only
  bool backward_reads_output() const override { return false; }
  void plan(const KernelTable<T>&, int N) override { mask_.reserve(size_t(N) * this->in_shape[2]); }
  int64_t plan_bytes(const KernelTable<T>&, int N) const override {
    return int64_t(N) * this->in_shape[2] * int64_t(sizeof(T));
  }
  void forward(const KernelTable<T>& k, const PassContext& c, int N, const T* x, T* y, T*, bool training) override {
    const int C = this->in_shape[2];
    const int64_t M = int64_t(this->in_shape[0]) * this->in_shape[1];
    training_ = training && rate_ > 0.0;
    if (training_) {
      k.channel_mask(mask_.data(), int64_t(N) * C, rate_, seed_, c.step);
      k.scale_channels(y, x, mask_.data(), N, M, C);
    } else {
      for (int64_t i = 0; i < N * this->in_size; ++i) y[i] = x[i];
    }
  }
  void backward(const KernelTable<T>& k, const PassContext&, int N, const T*, const T*, T* dy, T* dx, T*) override {
    if (!dx) return;
    const int C = this->in_shape[2];
    const int64_t M = int64_t(this->in_shape[0]) * this->in_shape[1];
    if (training_) k.scale_channels(dx, dy, mask_.data(), N, M, C);
    else for (int64_t i = 0; i < N * this->in_size; ++i) dx[i] = dy[i];
  }

 private:
  double rate_;
  uint64_t seed_;
  bool training_ = false;
  Buffer<T> mask_;
};

template <typename T>
class GaussianNoiseLayer : public Layer<T> {
 public:
  GaussianNoiseLayer(const std::string& name, const Shape& in, double stddev, uint64_t seed)
      : stddev_(stddev), seed_(seed) {
    CNNBP_CHECK(stddev >= 0.0 && std::isfinite(stddev), name, " (GaussianNoise): expected stddev >= 0, got ", stddev);
    set_shapes(*this, name, in, in);
  }
  const char* kind() const override { return "GaussianNoise"; }
  bool backward_reads_inputs() const override { return false; }
  bool backward_reads_output() const override { return false; }
  void forward(const KernelTable<T>& k, const PassContext& c, int N, const T* x, T* y, T*, bool training) override {
    const int64_t n = N * this->in_size;
    if (training && stddev_ > 0.0) k.gaussian_noise(y, x, n, stddev_, seed_, c.step);
    else for (int64_t i = 0; i < n; ++i) y[i] = x[i];
  }
  void backward(const KernelTable<T>&, const PassContext&, int N, const T*, const T*, T* dy, T* dx, T*) override {
    if (!dx) return;
    for (int64_t i = 0; i < N * this->in_size; ++i) dx[i] = dy[i];
  }

 private:
  double stddev_;
  uint64_t seed_;
};

}  // namespace

template <typename T>
std::unique_ptr<Layer<T>> make_spatial_dropout2d(const std::string& name, const Shape& in, double rate, uint64_t seed) {
  return std::make_unique<SpatialDropoutLayer<T>>(name, in, rate, seed);
}
template <typename T>
std::unique_ptr<Layer<T>> make_gaussian_noise(const std::string& name, const Shape& in, double stddev, uint64_t seed) {
  return std::make_unique<GaussianNoiseLayer<T>>(name, in, stddev, seed);
}
template std::unique_ptr<Layer<float>> make_spatial_dropout2d<float>(const std::string&, const Shape&, double, uint64_t);
template std::unique_ptr<Layer<double>> make_spatial_dropout2d<double>(const std::string&, const Shape&, double,
                                                                       uint64_t);
template std::unique_ptr<Layer<float>> make_gaussian_noise<float>(const std::string&, const Shape&, double, uint64_t);
template std::unique_ptr<Layer<double>> make_gaussian_noise<double>(const std::string&, const Shape&, double, uint64_t);

}  // namespace cnnbp
