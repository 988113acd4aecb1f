// Image preprocessing layers over channels-last tensors. The random ones (RandomFlip,
// RandomTranslation, RandomRotation, RandomZoom, RandomCrop, RandomContrast, RandomBrightness,
// RandomErasing) act only while training and draw one set of numbers per sample from
// uniform(seed, step, sample) (core/random.h): training is reproducible and resumable, data-parallel
// ranks (another stream in the step) draw differently, and the thread count changes nothing. In
// inference they are the identity, except RandomCrop, which takes the centre window. Rescaling and
// Normalization are per-channel affine maps, the same in training and inference. Every layer
// has its exact backward (the map applied with the sample's draws), so gradients reach the input
// (saliency through an augmentation layer, gradient checks).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/check.h"
#include "core/random.h"
#include "nn/layers.h"
#include "nn/registry.h"

namespace cnnbp {

namespace {

constexpr double kTwoPi = 6.283185307179586;

// The draws of sample n in pass `step` (up to 8 per sample).
inline double draw(uint64_t seed, uint64_t step, int64_t n, int k) { return uniform01(seed, step, uint64_t(8 * n + k)); }

// [lo, hi] from the config keys `lo_key`, `hi_key`, checked against [min, max].
std::pair<double, double> range(const LayerConfig& c, const char* lo_key, const char* hi_key, double min, double max) {
  const double lo = c.get_float(lo_key, 0.0), hi = c.get_float(hi_key, 0.0);
  CNNBP_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo <= hi && lo >= min && hi <= max, c.who, ": expected ", min,
              " <= lower <= upper <= ", max, ", got lower ", lo, ", upper ", hi);
  return {lo, hi};
}

FillMode fill_from_name(const LayerConfig& c) {
  const std::string s = c.get_str("fill_mode", "reflect");
  if (s == "constant") return FillMode::constant;
  if (s == "reflect") return FillMode::reflect;
  if (s == "wrap") return FillMode::wrap;
  if (s == "nearest") return FillMode::nearest;
  throw std::invalid_argument(c.who + ": fill_mode must be 'constant', 'reflect', 'wrap' or 'nearest', got '" + s + "'");
}

template <typename T>
void copy(T* dst, const T* src, int64_t n) {
  std::memcpy(dst, src, sizeof(T) * size_t(n));
}

// ---- geometric: one source map per sample -------------------------------------------------------
enum class WarpKind { flip, translation, rotation, zoom, crop };

template <typename T>
class WarpLayer : public Layer<T> {
 public:
  WarpLayer(const std::string& name, const char* kind, WarpKind wk, const Shape& in, const LayerConfig& c)
      : kind_(kind), wk_(wk) {
    require_rank3(name, kind, in);
    seed_ = uint64_t(c.get_int("seed", 0));
    p_ = WarpParams{0, in[0], in[1], in[2], in[0], in[1], true, FillMode::constant, 0.0};
    switch (wk) {
      case WarpKind::flip: {
        const std::string m = c.get_str("mode", "horizontal_and_vertical");
        CNNBP_CHECK(m == "horizontal" || m == "vertical" || m == "horizontal_and_vertical", c.who,
                    ": mode must be 'horizontal', 'vertical' or 'horizontal_and_vertical', got '", m, "'");
        hflip_ = m != "vertical";
        vflip_ = m != "horizontal";
        p_.bilinear = false;
        break;
      }
      case WarpKind::translation:
        h_ = range(c, "height_lower", "height_upper", -1.0, 1.0);
        w_ = range(c, "width_lower", "width_upper", -1.0, 1.0);
        break;
      case WarpKind::rotation:
        h_ = range(c, "lower", "upper", -1.0, 1.0);
        break;
      case WarpKind::zoom:
        h_ = range(c, "height_lower", "height_upper", -1.0, 1e6);
        same_ = c.get_bool("same", true);
        if (!same_) w_ = range(c, "width_lower", "width_upper", -1.0, 1e6);
        CNNBP_CHECK(h_.first > -1.0 && (same_ || w_.first > -1.0), c.who,
                    ": zoom factors must be > -1 (a factor of -1 zooms in infinitely)");
        break;
      case WarpKind::crop: {
        pad_ = c.get_int32("padding", 0);
        p_.Ho = c.get_int32("height", 0);
        p_.Wo = c.get_int32("width", 0);
        CNNBP_CHECK(pad_ >= 0, c.who, ": padding must be >= 0, got ", pad_);
        CNNBP_CHECK(p_.Ho > 0 && p_.Wo > 0, c.who, ": height and width must be positive, got ", p_.Ho, ", ", p_.Wo);
        CNNBP_CHECK(int64_t(p_.Ho) <= int64_t(in[0]) + 2 * int64_t(pad_) &&
                        int64_t(p_.Wo) <= int64_t(in[1]) + 2 * int64_t(pad_),
                    c.who, ": a ", p_.Ho, "x", p_.Wo, " crop does not fit the ", in[0], "x", in[1], " input",
                    pad_ ? " padded by " + std::to_string(pad_) : std::string());
        p_.bilinear = false;
        break;
      }
    }
    if (wk != WarpKind::flip && wk != WarpKind::crop) {
      p_.fill = fill_from_name(c);
      p_.fill_value = c.get_float("fill_value", 0.0);
      const std::string interp = c.get_str("interpolation", "bilinear");
      CNNBP_CHECK(interp == "bilinear" || interp == "nearest", c.who,
                  ": interpolation must be 'bilinear' or 'nearest', got '", interp, "'");
      p_.bilinear = interp == "bilinear";
    }
    set_shapes(*this, name, in, Shape{p_.Ho, p_.Wo, in[2]});
  }
  const char* kind() const override { return kind_; }
  bool backward_reads_inputs() const override { return false; }
  bool backward_reads_output() const override { return false; }
  void plan(const KernelTable<T>&, int N) override { mats_.reserve(6 * size_t(N)); }
  int64_t plan_bytes(const KernelTable<T>&, int N) const override { return 6 * int64_t(N) * int64_t(sizeof(double)); }

  void forward(const KernelTable<T>& k, const PassContext& c, int N, const T* x, T* y, T*, bool training) override {
    identity_ = !training && wk_ != WarpKind::crop;
    if (identity_) return copy(y, x, N * this->in_size);
    double* A = mats_.data();
    for (int64_t n = 0; n < N; ++n) source_map(A + 6 * n, n, c.step, training);
    WarpParams p = p_;
    p.N = N;
    k.warp_forward(y, x, A, p);
  }
  void backward(const KernelTable<T>& k, const PassContext&, int N, const T*, const T*, T* dy, T* dx, T*) override {
    if (!dx) return;
    if (identity_) return copy(dx, dy, N * this->in_size);
    WarpParams p = p_;
    p.N = N;
    k.warp_backward(dx, dy, mats_.data(), p, false);
  }

 private:
  // A = [a0 a1 a2; b0 b1 b2]: output pixel (row i, column j) reads (a0 j + a1 i + a2, b0 j + b1 i + b2).
  void source_map(double* A, int64_t n, uint64_t step, bool training) const {
    const double H = p_.H, W = p_.W, cx = (W - 1) / 2, cy = (H - 1) / 2;
    auto u = [&](int k) { return draw(seed_, step, n, k); };
    auto pick = [&](std::pair<double, double> r, int k) { return r.first + u(k) * (r.second - r.first); };
    A[0] = 1, A[1] = 0, A[2] = 0, A[3] = 0, A[4] = 1, A[5] = 0;
    switch (wk_) {
      case WarpKind::flip:
        if (hflip_ && u(0) < 0.5) A[0] = -1, A[2] = W - 1;
        if (vflip_ && u(1) < 0.5) A[4] = -1, A[5] = H - 1;
        break;
      case WarpKind::translation:  // shifted down by dy and right by dx pixels
        A[5] = -pick(h_, 0) * H;
        A[2] = -pick(w_, 1) * W;
        break;
      case WarpKind::rotation: {   // counter-clockwise as displayed (rows down) about the centre
        const double t = kTwoPi * pick(h_, 0), cs = std::cos(t), sn = std::sin(t);
        A[0] = cs, A[1] = -sn, A[2] = cx - cs * cx + sn * cy;
        A[3] = sn, A[4] = cs, A[5] = cy - sn * cx - cs * cy;
        break;
      }
      case WarpKind::zoom: {       // factor > 0: zoomed out (a wider source window)
        const double zy = 1 + pick(h_, 0), zx = same_ ? zy : 1 + pick(w_, 1);
        A[0] = zx, A[2] = cx - zx * cx;
        A[4] = zy, A[5] = cy - zy * cy;
        break;
      }
      case WarpKind::crop: {
        const int64_t rh = int64_t(p_.H) + 2 * int64_t(pad_) - p_.Ho, rw = int64_t(p_.W) + 2 * int64_t(pad_) - p_.Wo;
        int64_t top = rh / 2, left = rw / 2;
        if (training) {
          top = std::min(rh, int64_t(u(0) * double(rh + 1)));
          left = std::min(rw, int64_t(u(1) * double(rw + 1)));
        }
        A[2] = double(left - pad_);
        A[5] = double(top - pad_);
        break;
      }
    }
  }

  const char* kind_;
  WarpKind wk_;
  WarpParams p_;
  uint64_t seed_ = 0;
  bool hflip_ = false, vflip_ = false, same_ = true;
  std::pair<double, double> h_{0, 0}, w_{0, 0};
  int pad_ = 0;
  bool identity_ = false;
  Buffer<double> mats_;
};

// ---- photometric ---------------------------------------------------------------------------------
enum class ColorKind { contrast, brightness, erasing };

template <typename T>
class ColorLayer : public Layer<T> {
 public:
  ColorLayer(const std::string& name, const char* kind, ColorKind ck, const Shape& in, const LayerConfig& c)
      : kind_(kind), ck_(ck) {
    require_rank3(name, kind, in);
    seed_ = uint64_t(c.get_int("seed", 0));
    if (ck != ColorKind::erasing) {
      lo_ = c.get_float("value_lower", 0.0);
      hi_ = c.get_float("value_upper", 255.0);
      CNNBP_CHECK(std::isfinite(lo_) && std::isfinite(hi_) && lo_ < hi_, c.who,
                  ": value_range must be (low, high) with low < high, got (", lo_, ", ", hi_, ")");
    }
    switch (ck) {
      case ColorKind::contrast:  // the factor is drawn in [1 - lower, 1 + upper]
        f_ = {c.get_float("lower", 0.0), c.get_float("upper", 0.0)};
        CNNBP_CHECK(f_.first >= 0 && f_.first <= 1 && f_.second >= 0 && std::isfinite(f_.second), c.who,
                    ": expected 0 <= lower <= 1 and upper >= 0, got lower ", f_.first, ", upper ", f_.second);
        break;
      case ColorKind::brightness: f_ = range(c, "lower", "upper", -1.0, 1.0); break;
      case ColorKind::erasing:
        prob_ = c.get_float("factor", 1.0);
        CNNBP_CHECK(prob_ >= 0 && prob_ <= 1, c.who, ": factor (the probability of erasing) must be in [0, 1], got ",
                    prob_);
        f_ = range(c, "scale_lower", "scale_upper", 0.0, 1.0);
        r_ = range(c, "ratio_lower", "ratio_upper", 1e-6, 1e6);
        value_ = c.get_float("fill_value", 0.0);
        break;
    }
    set_shapes(*this, name, in, in);
  }
  const char* kind() const override { return kind_; }
  bool backward_reads_inputs() const override { return false; }
  bool backward_reads_output() const override { return ck_ != ColorKind::erasing; }  // the clipping mask
  void plan(const KernelTable<T>&, int N) override {
    factor_.reserve(size_t(N));
    boxes_.reserve(4 * size_t(N));
  }
  int64_t plan_bytes(const KernelTable<T>&, int N) const override {
    return int64_t(N) * int64_t(sizeof(T) + 4 * sizeof(int32_t));
  }
  void forward(const KernelTable<T>& k, const PassContext& c, int N, const T* x, T* y, T*, bool training) override {
    active_ = training;
    if (!active_) return copy(y, x, N * this->in_size);
    const Shape& s = this->in_shape;
    const int64_t M = int64_t(s[0]) * s[1];
    T* f = factor_.data();
    auto pick = [&](std::pair<double, double> r, int64_t n, int k) {
      return r.first + draw(seed_, c.step, n, k) * (r.second - r.first);
    };
    switch (ck_) {
      case ColorKind::contrast:
        for (int64_t n = 0; n < N; ++n) f[n] = T(1.0 + pick({-f_.first, f_.second}, n, 0));
        k.contrast_forward(y, x, f, N, M, s[2], lo_, hi_);
        break;
      case ColorKind::brightness:
        for (int64_t n = 0; n < N; ++n) f[n] = T(pick(f_, n, 0) * (hi_ - lo_));
        k.shift_clip_forward(y, x, f, N, this->in_size, lo_, hi_);
        break;
      case ColorKind::erasing: {
        int32_t* b = boxes_.data();
        const int H = s[0], W = s[1];
        for (int64_t n = 0; n < N; ++n) {
          int32_t* bn = b + 4 * n;
          bn[0] = bn[1] = bn[2] = bn[3] = 0;
          if (!(draw(seed_, c.step, n, 0) < prob_)) continue;
          const double area = double(H) * W * pick(f_, n, 1);
          const double ar = std::exp(pick({std::log(r_.first), std::log(r_.second)}, n, 2));
          const int h = int(std::lround(std::clamp(std::sqrt(area * ar), 1.0, double(H))));
          const int w = int(std::lround(std::clamp(std::sqrt(area / ar), 1.0, double(W))));
          bn[0] = std::min(H - h, int(draw(seed_, c.step, n, 3) * (H - h + 1)));
          bn[1] = std::min(W - w, int(draw(seed_, c.step, n, 4) * (W - w + 1)));
          bn[2] = h, bn[3] = w;
        }
        k.erase_boxes(y, x, b, N, H, W, s[2], value_, false);
        break;
      }
    }
  }
  void backward(const KernelTable<T>& k, const PassContext&, int N, const T*, const T* y, T* dy, T* dx, T*) override {
    if (!dx) return;
    if (!active_) return copy(dx, dy, N * this->in_size);
    const Shape& s = this->in_shape;
    switch (ck_) {
      case ColorKind::contrast:
        k.contrast_backward(dx, dy, y, factor_.data(), N, int64_t(s[0]) * s[1], s[2], lo_, hi_, false);
        break;
      case ColorKind::brightness: k.shift_clip_backward(dx, dy, y, N * this->in_size, lo_, hi_, false); break;
      case ColorKind::erasing: k.erase_boxes(dx, dy, boxes_.data(), N, s[0], s[1], s[2], 0.0, false); break;
    }
  }

 private:
  const char* kind_;
  ColorKind ck_;
  uint64_t seed_ = 0;
  double lo_ = 0, hi_ = 255, prob_ = 1, value_ = 0;
  std::pair<double, double> f_{0, 0}, r_{1, 1};
  bool active_ = false;
  Buffer<T> factor_;
  Buffer<int32_t> boxes_;
};

// ---- per-channel affine maps: Rescaling and Normalization ---------------------------------------
template <typename T>
class AffineLayer : public Layer<T> {
 public:
  // normalization: y = (x - mean) / max(sqrt(variance), 1e-7) with mean and variance in the state
  // buffer (invert: x * max(sqrt(variance), 1e-7) + mean); else y = x * scale + offset.
  AffineLayer(const std::string& name, bool normalization, const Shape& in, const LayerConfig& c)
      : norm_(normalization) {
    CNNBP_CHECK(!in.empty(), name, normalization ? " (Normalization)" : " (Rescaling)",
                ": expected an input with a feature axis");
    set_shapes(*this, name, in, in);
    C_ = in.back();
    rows_ = shape_numel(in) / C_;
    if (norm_) {
      invert_ = c.get_bool("invert", false);
      this->state.push_back({"mean", {C_}, 0, C_, "zeros", C_, C_});
      this->state.push_back({"variance", {C_}, 0, C_, "ones", C_, C_});
    } else {
      scale_v_ = c.get_float("scale", 1.0);
      offset_v_ = c.get_float("offset", 0.0);
      CNNBP_CHECK(std::isfinite(scale_v_) && std::isfinite(offset_v_), c.who, ": scale and offset must be finite");
    }
  }
  const char* kind() const override { return norm_ ? "Normalization" : "Rescaling"; }
  bool backward_reads_inputs() const override { return false; }
  bool backward_reads_output() const override { return false; }
  void plan(const KernelTable<T>&, int) override {
    for (Buffer<T>* b : {&scale_, &shift_, &zero_}) {
      if (b->capacity() >= size_t(C_)) continue;
      b->reserve(size_t(C_));
      b->zero();
    }
  }
  int64_t plan_bytes(const KernelTable<T>&, int) const override { return 3 * int64_t(C_) * sizeof(T); }
  void forward(const KernelTable<T>& k, const PassContext&, int N, const T* x, T* y, T*, bool) override {
    T* sc = scale_.data();
    T* sh = shift_.data();
    for (int c = 0; c < C_; ++c) {
      if (!norm_) {
        sc[c] = T(scale_v_), sh[c] = T(offset_v_);
        continue;
      }
      const double mean = double(this->s(0)[c]), sd = std::max(std::sqrt(std::max(double(this->s(1)[c]), 0.0)), 1e-7);
      sc[c] = T(invert_ ? sd : 1.0 / sd);
      sh[c] = T(invert_ ? mean : -mean / sd);
    }
    k.batchnorm_apply(y, x, sc, sh, nullptr, N * rows_, C_, false);
  }
  void backward(const KernelTable<T>& k, const PassContext&, int N, const T*, const T*, T* dy, T* dx, T*) override {
    if (dx) k.batchnorm_apply(dx, dy, scale_.data(), zero_.data(), nullptr, N * rows_, C_, false);
  }

 private:
  bool norm_, invert_ = false;
  double scale_v_ = 1, offset_v_ = 0;
  int C_ = 0;
  int64_t rows_ = 0;
  Buffer<T> scale_, shift_, zero_;
};

}  // namespace

template <typename T>
std::unique_ptr<Layer<T>> make_preprocessing(PreprocessingKind kind, const std::string& name, const Shape& in,
                                             const LayerConfig& c) {
  switch (kind) {
    case PreprocessingKind::random_flip: return std::make_unique<WarpLayer<T>>(name, "RandomFlip", WarpKind::flip, in, c);
    case PreprocessingKind::random_translation:
      return std::make_unique<WarpLayer<T>>(name, "RandomTranslation", WarpKind::translation, in, c);
    case PreprocessingKind::random_rotation:
      return std::make_unique<WarpLayer<T>>(name, "RandomRotation", WarpKind::rotation, in, c);
    case PreprocessingKind::random_zoom: return std::make_unique<WarpLayer<T>>(name, "RandomZoom", WarpKind::zoom, in, c);
    case PreprocessingKind::random_crop: return std::make_unique<WarpLayer<T>>(name, "RandomCrop", WarpKind::crop, in, c);
    case PreprocessingKind::random_contrast:
      return std::make_unique<ColorLayer<T>>(name, "RandomContrast", ColorKind::contrast, in, c);
    case PreprocessingKind::random_brightness:
      return std::make_unique<ColorLayer<T>>(name, "RandomBrightness", ColorKind::brightness, in, c);
    case PreprocessingKind::random_erasing:
      return std::make_unique<ColorLayer<T>>(name, "RandomErasing", ColorKind::erasing, in, c);
    case PreprocessingKind::rescaling: return std::make_unique<AffineLayer<T>>(name, false, in, c);
    case PreprocessingKind::normalization: return std::make_unique<AffineLayer<T>>(name, true, in, c);
  }
  throw std::logic_error("make_preprocessing: unknown kind");
}

template std::unique_ptr<Layer<float>> make_preprocessing<float>(PreprocessingKind, const std::string&, const Shape&,
                                                                 const LayerConfig&);
template std::unique_ptr<Layer<double>> make_preprocessing<double>(PreprocessingKind, const std::string&, const Shape&,
                                                                   const LayerConfig&);

}  // namespace cnnbp
