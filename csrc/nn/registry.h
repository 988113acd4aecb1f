// One registration point per layer kind: make_layer(kind, ...) builds any layer from a
// LayerConfig (names to values, as Python's layer specs pass them through the one generic
// add_layer binding). Adding a kind: its class and make_* in the family's file under nn/, one
// row in registry.cpp's table, one Python class in cnnbp/layers (docs/adding_a_layer.md).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "nn/layer.h"

namespace cnnbp {

class LayerConfig {
 public:
  using Value = std::variant<int64_t, double, bool, std::string, std::vector<int64_t>>;
  void set(const std::string& key, Value v) { values_[key] = std::move(v); }
  // Typed reads with a default when the key is absent; a value of the wrong type is a ValueError
  // naming `who` and the key.
  int64_t get_int(const std::string& key, int64_t def) const;
  int get_int32(const std::string& key, int def) const;  // also checks the value fits an int
  double get_float(const std::string& key, double def) const;
  bool get_bool(const std::string& key, bool def) const;
  std::string get_str(const std::string& key, const std::string& def) const;
  std::vector<int> get_ints(const std::string& key, size_t n, const std::vector<int>& def) const;
  std::vector<int> get_int_list(const std::string& key) const;  // any length; empty when absent
  // Throws if a key was never read (a misspelt or unsupported option).
  void check_all_read() const;
  std::string who;

 private:
  const Value* find(const std::string& key) const;
  std::map<std::string, Value> values_;
  mutable std::set<std::string> read_;
};

// in: the input shapes; in_names: the layers (or the model input) they come from, for messages.
template <typename T>
std::unique_ptr<Layer<T>> make_layer(const std::string& kind, const std::string& name, const std::vector<Shape>& in,
                                     const std::vector<std::string>& in_names, const LayerConfig& cfg);
std::vector<std::string> layer_kinds();

Act act_from_name(const std::string& s);
PadMode pad_from_name(const std::string& s);

// New layer families (nn/merge.cpp, nn/normalization.cpp, nn/reshaping.cpp).
template <typename T>
std::unique_ptr<Layer<T>> make_merge(const std::string& name, const char* kind, MergeOp op, const std::vector<Shape>& in,
                                     const std::vector<std::string>& in_names, Act act = Act::linear);
template <typename T>
std::unique_ptr<Layer<T>> make_concatenate(const std::string& name, int axis, const std::vector<Shape>& in,
                                           const std::vector<std::string>& in_names);
struct BatchNormConfig {
  double momentum = 0.99, epsilon = 1e-3;
  bool center = true, scale = true;
  std::string beta_init = "zeros", gamma_init = "ones", mean_init = "zeros", var_init = "ones";
  Act act = Act::linear;  // a fused following ReLU (Act::relu), or none
};
// in: the input, and optionally a residual of the same shape added after the normalisation.
template <typename T>
std::unique_ptr<Layer<T>> make_batch_norm(const std::string& name, const std::vector<Shape>& in,
                                          const std::vector<std::string>& in_names, const BatchNormConfig& cfg);
// pads: top, bottom, left, right; crop = true crops them off instead of adding zeros.
template <typename T>
std::unique_ptr<Layer<T>> make_pad_crop2d(const std::string& name, const Shape& in, const std::vector<int>& pads, bool crop);
template <typename T>
std::unique_ptr<Layer<T>> make_identity(const std::string& name, const Shape& in);
template <typename T>
std::unique_ptr<Layer<T>> make_spatial_dropout2d(const std::string& name, const Shape& in, double rate, uint64_t seed);
template <typename T>
std::unique_ptr<Layer<T>> make_gaussian_noise(const std::string& name, const Shape& in, double stddev, uint64_t seed);
// LayerNormalization over the last axis.
template <typename T>
std::unique_ptr<Layer<T>> make_layer_norm(const std::string& name, const Shape& in, double epsilon, bool center,
                                          bool scale, const std::string& gamma_init, const std::string& beta_init);
// PReLU: shared_axes 1-based (a slope shared along them); alpha_init as the other initializers.
template <typename T>
std::unique_ptr<Layer<T>> make_prelu(const std::string& name, const Shape& in, const std::vector<int>& shared_axes,
                                     const std::string& alpha_init);
template <typename T>
std::unique_ptr<Layer<T>> make_reshape(const std::string& name, const Shape& in, const Shape& out);
// dims: 1-based, as Keras's Permute
template <typename T>
std::unique_ptr<Layer<T>> make_permute(const std::string& name, const Shape& in, const std::vector<int>& dims);
template <typename T>
std::unique_ptr<Layer<T>> make_upsampling2d(const std::string& name, const Shape& in, int sh, int sw, bool bilinear);

// Image preprocessing and augmentation (nn/preprocessing.cpp); c: the layer's options.
enum class PreprocessingKind {
  random_flip, random_translation, random_rotation, random_zoom, random_crop, random_contrast, random_brightness,
  random_erasing, rescaling, normalization
};
template <typename T>
std::unique_ptr<Layer<T>> make_preprocessing(PreprocessingKind kind, const std::string& name, const Shape& in,
                                             const LayerConfig& c);

}  // namespace cnnbp
