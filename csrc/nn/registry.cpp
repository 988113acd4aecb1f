#include "nn/registry.h"

#include <climits>

#include "core/check.h"
#include "nn/layers.h"

namespace cnnbp {

// ---- LayerConfig ------------------------------------------------------------------------------
const LayerConfig::Value* LayerConfig::find(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end()) return nullptr;
  read_.insert(key);
  return &it->second;
}

int64_t LayerConfig::get_int(const std::string& key, int64_t def) const {
  const Value* v = find(key);
  if (!v) return def;
  if (auto p = std::get_if<int64_t>(v)) return *p;
  throw std::invalid_argument(detail::concat(who, ": ", key, " must be an int"));
}

int LayerConfig::get_int32(const std::string& key, int def) const {
  const int64_t v = get_int(key, def);
  CNNBP_CHECK(v >= INT_MIN && v <= INT_MAX, who, ": ", key, " = ", v, " is too large (the limit is ", INT_MAX, ")");
  return int(v);
}

double LayerConfig::get_float(const std::string& key, double def) const {
  const Value* v = find(key);
  if (!v) return def;
  if (auto p = std::get_if<double>(v)) return *p;
  if (auto p = std::get_if<int64_t>(v)) return double(*p);
  throw std::invalid_argument(detail::concat(who, ": ", key, " must be a number"));
}

bool LayerConfig::get_bool(const std::string& key, bool def) const {
  const Value* v = find(key);
  if (!v) return def;
  if (auto p = std::get_if<bool>(v)) return *p;
  throw std::invalid_argument(detail::concat(who, ": ", key, " must be True or False"));
}

std::string LayerConfig::get_str(const std::string& key, const std::string& def) const {
  const Value* v = find(key);
  if (!v) return def;
  if (auto p = std::get_if<std::string>(v)) return *p;
  throw std::invalid_argument(detail::concat(who, ": ", key, " must be a string"));
}

std::vector<int> LayerConfig::get_ints(const std::string& key, size_t n, const std::vector<int>& def) const {
  const Value* v = find(key);
  if (!v) return def;
  std::vector<int64_t> raw;
  if (auto p = std::get_if<int64_t>(v)) raw.assign(n, *p);
  else if (auto q = std::get_if<std::vector<int64_t>>(v)) raw = *q;
  else throw std::invalid_argument(detail::concat(who, ": ", key, " must be a list of ", n, " ints"));
  CNNBP_CHECK(raw.size() == n, who, ": ", key, " must have ", n, " values, got ", raw.size());
  std::vector<int> out;
  for (int64_t x : raw) {
    CNNBP_CHECK(x >= INT_MIN && x <= INT_MAX, who, ": ", key, " value ", x, " is too large (the limit is ", INT_MAX, ")");
    out.push_back(int(x));
  }
  return out;
}

std::vector<int> LayerConfig::get_int_list(const std::string& key) const {
  const Value* v = find(key);
  if (!v) return {};
  auto q = std::get_if<std::vector<int64_t>>(v);
  CNNBP_CHECK(q, who, ": ", key, " must be a list of ints");
  return get_ints(key, q->size(), {});
}

void LayerConfig::check_all_read() const {
  for (const auto& kv : values_)
    CNNBP_CHECK(read_.count(kv.first), who, ": unknown option '", kv.first, "'");
}

// ---- names ------------------------------------------------------------------------------------
Act act_from_name(const std::string& s) {
  if (s == "None") return Act::linear;
  if (s == "relu6") return Act::relu_max;  // with alpha 6 (the Python layer passes it)
  std::string names;
  for (int k = 0; k < kActKinds; ++k) {
    if (s == kActNames[k]) return Act(k);
    names += (k ? ", " : "") + std::string(kActNames[k]);
  }
  throw std::invalid_argument("unknown activation '" + s + "'; expected one of " + names);
}

PadMode pad_from_name(const std::string& s) {
  if (s == "valid") return PadMode::valid;
  if (s == "same") return PadMode::same;
  if (s == "explicit") return PadMode::explicit_;
  throw std::invalid_argument("unknown padding '" + s + "'; expected 'valid' or 'same'");
}

// ---- the table --------------------------------------------------------------------------------
namespace {

void require_inputs(const LayerConfig& c, const std::vector<Shape>& in, size_t lo, size_t hi) {
  CNNBP_CHECK(in.size() >= lo && in.size() <= hi, c.who, ": expected ",
              lo == hi ? std::to_string(lo) : (hi > 1000 ? "at least " + std::to_string(lo) : std::to_string(lo) + " to " + std::to_string(hi)),
              " input(s), got ", in.size());
}
constexpr size_t kMany = size_t(1) << 20;

template <typename T>
using Factory = std::unique_ptr<Layer<T>> (*)(const std::string& name, const std::vector<Shape>& in,
                                              const std::vector<std::string>& in_names, const LayerConfig& c);

Conv2dConfig conv_config(const LayerConfig& c) {
  Conv2dConfig k;
  k.filters = c.get_int32("filters", 0);
  auto ks = c.get_ints("kernel_size", 2, {1, 1}), st = c.get_ints("strides", 2, {1, 1}),
       dl = c.get_ints("dilation", 2, {1, 1}), pads = c.get_ints("pads", 4, {0, 0, 0, 0});
  k.kh = ks[0]; k.kw = ks[1]; k.sh = st[0]; k.sw = st[1]; k.dh = dl[0]; k.dw = dl[1];
  k.pad = pad_from_name(c.get_str("padding", "valid"));
  k.pt = pads[0]; k.pb = pads[1]; k.pl = pads[2]; k.pr = pads[3];
  k.use_bias = c.get_bool("use_bias", true);
  k.kernel_init = c.get_str("kernel_initializer", "glorot_uniform");
  k.bias_init = c.get_str("bias_initializer", "zeros");
  k.act = act_from_name(c.get_str("activation", "linear"));
  k.alpha = c.get_float("alpha", 0.0);
  return k;
}

// Conv2D(groups > 1) and DepthwiseConv2D (depthwise: filters = channels * depth_multiplier).
template <typename T>
std::unique_ptr<Layer<T>> grouped_conv2d(const std::string& name, const std::vector<Shape>& in,
                                         const std::vector<std::string>&, const LayerConfig& c) {
  require_inputs(c, in, 1, 1);
  Conv2dConfig k = conv_config(c);
  const bool depthwise = c.get_bool("depthwise", false);
  int groups = c.get_int32("groups", 1);
  if (depthwise) {
    const int m = c.get_int32("depth_multiplier", 1);
    CNNBP_CHECK(m >= 1, c.who, ": depth_multiplier must be >= 1, got ", m);
    CNNBP_CHECK(in[0].size() == 3, c.who, ": expected an input of shape (None, height, width, channels), got ",
                shape_str(in[0], true));
    k.filters = int(checked_mul(c.who, "filters", in[0][2], m, INT32_MAX));
    groups = in[0][2];
  }
  return make_grouped_conv2d<T>(name, in[0], k, groups, depthwise);
}

template <typename T>
std::unique_ptr<Layer<T>> conv2d(const std::string& name, const std::vector<Shape>& in, const std::vector<std::string>&,
                                 const LayerConfig& c) {
  require_inputs(c, in, 1, 1);
  return make_conv2d<T>(name, in[0], conv_config(c));
}

template <typename T, bool Max>
std::unique_ptr<Layer<T>> pool2d(const std::string& name, const std::vector<Shape>& in, const std::vector<std::string>&,
                                 const LayerConfig& c) {
  require_inputs(c, in, 1, 1);
  Pool2dConfig k;
  k.max = Max;
  auto ps = c.get_ints("pool_size", 2, {2, 2});
  auto st = c.get_ints("strides", 2, ps);
  k.ph = ps[0]; k.pw = ps[1]; k.sh = st[0]; k.sw = st[1];
  k.pad = pad_from_name(c.get_str("padding", "valid"));
  CNNBP_CHECK(k.pad != PadMode::explicit_, c.who, ": pooling padding must be 'valid' or 'same'");
  return make_pool2d<T>(name, in[0], k);
}

template <typename T>
std::unique_ptr<Layer<T>> gap2d(const std::string& name, const std::vector<Shape>& in, const std::vector<std::string>&,
                                const LayerConfig& c) {
  require_inputs(c, in, 1, 1);
  return make_global_avg_pool2d<T>(name, in[0]);
}

template <typename T>
std::unique_ptr<Layer<T>> gmp2d(const std::string& name, const std::vector<Shape>& in, const std::vector<std::string>&,
                                const LayerConfig& c) {
  require_inputs(c, in, 1, 1);
  return make_global_max_pool2d<T>(name, in[0]);
}

template <typename T>
std::unique_ptr<Layer<T>> dense(const std::string& name, const std::vector<Shape>& in, const std::vector<std::string>&,
                                const LayerConfig& c) {
  require_inputs(c, in, 1, 1);
  return make_dense<T>(name, in[0], c.get_int32("units", 0), c.get_bool("use_bias", true),
                       c.get_str("kernel_initializer", "glorot_uniform"), c.get_str("bias_initializer", "zeros"),
                       act_from_name(c.get_str("activation", "linear")), c.get_float("alpha", 0.0));
}

template <typename T>
std::unique_ptr<Layer<T>> flatten(const std::string& name, const std::vector<Shape>& in, const std::vector<std::string>&,
                                  const LayerConfig& c) {
  require_inputs(c, in, 1, 1);
  return make_flatten<T>(name, in[0]);
}

template <typename T>
std::unique_ptr<Layer<T>> activation(const std::string& name, const std::vector<Shape>& in,
                                     const std::vector<std::string>&, const LayerConfig& c) {
  require_inputs(c, in, 1, 1);
  return make_activation<T>(name, in[0], act_from_name(c.get_str("activation", "linear")), c.get_float("alpha", 0.0));
}

template <typename T>
std::unique_ptr<Layer<T>> dropout(const std::string& name, const std::vector<Shape>& in, const std::vector<std::string>&,
                                  const LayerConfig& c) {
  require_inputs(c, in, 1, 1);
  return make_dropout<T>(name, in[0], c.get_float("rate", 0.0), uint64_t(c.get_int("seed", 0)));
}

template <typename T>
std::unique_ptr<Layer<T>> batch_norm(const std::string& name, const std::vector<Shape>& in,
                                     const std::vector<std::string>& in_names, const LayerConfig& c) {
  require_inputs(c, in, 1, 2);  // (a second input: the residual of a BatchNormalization -> Add pair)
  BatchNormConfig k;
  k.momentum = c.get_float("momentum", k.momentum);
  k.epsilon = c.get_float("epsilon", k.epsilon);
  k.center = c.get_bool("center", k.center);
  k.scale = c.get_bool("scale", k.scale);
  k.beta_init = c.get_str("beta_initializer", k.beta_init);
  k.gamma_init = c.get_str("gamma_initializer", k.gamma_init);
  k.mean_init = c.get_str("moving_mean_initializer", k.mean_init);
  k.var_init = c.get_str("moving_variance_initializer", k.var_init);
  k.act = act_from_name(c.get_str("activation", "linear"));
  return make_batch_norm<T>(name, in, in_names, k);
}

template <typename T, MergeOp Op>
std::unique_ptr<Layer<T>> merge(const std::string& name, const std::vector<Shape>& in,
                                const std::vector<std::string>& in_names, const LayerConfig& c) {
  static const char* const kinds[] = {"Add", "Subtract", "Multiply", "Average", "Maximum"};
  if (Op == MergeOp::subtract) require_inputs(c, in, 2, 2);
  else require_inputs(c, in, 2, kMany);
  return make_merge<T>(name, kinds[int(Op)], Op, in, in_names, act_from_name(c.get_str("activation", "linear")));
}

template <typename T>
std::unique_ptr<Layer<T>> concatenate(const std::string& name, const std::vector<Shape>& in,
                                      const std::vector<std::string>& in_names, const LayerConfig& c) {
  require_inputs(c, in, 2, kMany);
  return make_concatenate<T>(name, c.get_int32("axis", -1), in, in_names);
}

template <typename T, bool Crop>
std::unique_ptr<Layer<T>> pad_crop(const std::string& name, const std::vector<Shape>& in, const std::vector<std::string>&,
                                   const LayerConfig& c) {
  require_inputs(c, in, 1, 1);
  return make_pad_crop2d<T>(name, in[0], c.get_ints(Crop ? "cropping" : "padding", 4, {1, 1, 1, 1}), Crop);
}

template <typename T>
std::unique_ptr<Layer<T>> identity(const std::string& name, const std::vector<Shape>& in, const std::vector<std::string>&,
                                   const LayerConfig& c) {
  require_inputs(c, in, 1, 1);
  return make_identity<T>(name, in[0]);
}

template <typename T>
std::unique_ptr<Layer<T>> reshape(const std::string& name, const std::vector<Shape>& in, const std::vector<std::string>&,
                                  const LayerConfig& c) {
  require_inputs(c, in, 1, 1);
  return make_reshape<T>(name, in[0], c.get_int_list("target_shape"));
}

template <typename T>
std::unique_ptr<Layer<T>> permute(const std::string& name, const std::vector<Shape>& in, const std::vector<std::string>&,
                                  const LayerConfig& c) {
  require_inputs(c, in, 1, 1);
  return make_permute<T>(name, in[0], c.get_int_list("dims"));
}

template <typename T>
std::unique_ptr<Layer<T>> upsampling2d(const std::string& name, const std::vector<Shape>& in,
                                       const std::vector<std::string>&, const LayerConfig& c) {
  require_inputs(c, in, 1, 1);
  auto sz = c.get_ints("size", 2, {2, 2});
  const std::string mode = c.get_str("interpolation", "nearest");
  CNNBP_CHECK(mode == "nearest" || mode == "bilinear", c.who, ": interpolation must be 'nearest' or 'bilinear', got '",
              mode, "'");
  return make_upsampling2d<T>(name, in[0], sz[0], sz[1], mode == "bilinear");
}

template <typename T>
std::unique_ptr<Layer<T>> conv2d_transpose(const std::string& name, const std::vector<Shape>& in,
                                           const std::vector<std::string>&, const LayerConfig& c) {
  require_inputs(c, in, 1, 1);
  Conv2dConfig k = conv_config(c);
  CNNBP_CHECK(k.pad != PadMode::explicit_, c.who, ": padding must be 'valid' or 'same'");
  auto op = c.get_ints("output_padding", 2, {-1, -1});
  return make_conv2d_transpose<T>(name, in[0], k, op[0], op[1]);
}

template <typename T>
std::unique_ptr<Layer<T>> spatial_dropout2d(const std::string& name, const std::vector<Shape>& in,
                                            const std::vector<std::string>&, const LayerConfig& c) {
  require_inputs(c, in, 1, 1);
  return make_spatial_dropout2d<T>(name, in[0], c.get_float("rate", 0.0), uint64_t(c.get_int("seed", 0)));
}

template <typename T>
std::unique_ptr<Layer<T>> gaussian_noise(const std::string& name, const std::vector<Shape>& in,
                                         const std::vector<std::string>&, const LayerConfig& c) {
  require_inputs(c, in, 1, 1);
  return make_gaussian_noise<T>(name, in[0], c.get_float("stddev", 0.0), uint64_t(c.get_int("seed", 0)));
}

template <typename T>
std::unique_ptr<Layer<T>> layer_norm(const std::string& name, const std::vector<Shape>& in,
                                     const std::vector<std::string>&, const LayerConfig& c) {
  require_inputs(c, in, 1, 1);
  return make_layer_norm<T>(name, in[0], c.get_float("epsilon", 1e-3), c.get_bool("center", true),
                            c.get_bool("scale", true), c.get_str("gamma_initializer", "ones"),
                            c.get_str("beta_initializer", "zeros"));
}

template <typename T>
std::unique_ptr<Layer<T>> prelu(const std::string& name, const std::vector<Shape>& in, const std::vector<std::string>&,
                                const LayerConfig& c) {
  require_inputs(c, in, 1, 1);
  return make_prelu<T>(name, in[0], c.get_int_list("shared_axes"), c.get_str("alpha_initializer", "zeros"));
}

template <typename T, PreprocessingKind K>
std::unique_ptr<Layer<T>> preprocessing(const std::string& name, const std::vector<Shape>& in,
                                        const std::vector<std::string>&, const LayerConfig& c) {
  require_inputs(c, in, 1, 1);
  return make_preprocessing<T>(K, name, in[0], c);
}

template <typename T>
const std::vector<std::pair<const char*, Factory<T>>>& table() {
  static const std::vector<std::pair<const char*, Factory<T>>> t = {
      {"Conv2D", conv2d<T>},
      {"MaxPooling2D", pool2d<T, true>},
      {"AveragePooling2D", pool2d<T, false>},
      {"GlobalAveragePooling2D", gap2d<T>},
      {"GlobalMaxPooling2D", gmp2d<T>},
      {"Dense", dense<T>},
      {"Flatten", flatten<T>},
      {"Activation", activation<T>},
      {"Dropout", dropout<T>},
      {"BatchNormalization", batch_norm<T>},
      {"Add", merge<T, MergeOp::add>},
      {"Subtract", merge<T, MergeOp::subtract>},
      {"Multiply", merge<T, MergeOp::multiply>},
      {"Average", merge<T, MergeOp::average>},
      {"Maximum", merge<T, MergeOp::maximum>},
      {"Concatenate", concatenate<T>},
      {"ZeroPadding2D", pad_crop<T, false>},
      {"Cropping2D", pad_crop<T, true>},
      {"Identity", identity<T>},
      {"Reshape", reshape<T>},
      {"Permute", permute<T>},
      {"UpSampling2D", upsampling2d<T>},
      {"Conv2DTranspose", conv2d_transpose<T>},
      {"GroupedConv2D", grouped_conv2d<T>},
      {"SpatialDropout2D", spatial_dropout2d<T>},
      {"GaussianNoise", gaussian_noise<T>},
      {"LayerNormalization", layer_norm<T>},
      {"PReLU", prelu<T>},
      {"RandomFlip", preprocessing<T, PreprocessingKind::random_flip>},
      {"RandomTranslation", preprocessing<T, PreprocessingKind::random_translation>},
      {"RandomRotation", preprocessing<T, PreprocessingKind::random_rotation>},
      {"RandomZoom", preprocessing<T, PreprocessingKind::random_zoom>},
      {"RandomCrop", preprocessing<T, PreprocessingKind::random_crop>},
      {"RandomContrast", preprocessing<T, PreprocessingKind::random_contrast>},
      {"RandomBrightness", preprocessing<T, PreprocessingKind::random_brightness>},
      {"RandomErasing", preprocessing<T, PreprocessingKind::random_erasing>},
      {"Rescaling", preprocessing<T, PreprocessingKind::rescaling>},
      {"Normalization", preprocessing<T, PreprocessingKind::normalization>},
  };
  return t;
}

}  // namespace

template <typename T>
std::unique_ptr<Layer<T>> make_layer(const std::string& kind, const std::string& name, const std::vector<Shape>& in,
                                     const std::vector<std::string>& in_names, const LayerConfig& cfg) {
  for (const auto& e : table<T>()) {
    if (kind != e.first) continue;
    LayerConfig c = cfg;
    c.who = name + " (" + kind + ")";
    auto layer = e.second(name, in, in_names, c);
    c.check_all_read();
    return layer;
  }
  std::string known;
  for (const auto& e : table<float>()) known += std::string(known.empty() ? "" : ", ") + e.first;
  throw std::invalid_argument("unknown layer kind '" + kind + "'; known: " + known);
}

std::vector<std::string> layer_kinds() {
  std::vector<std::string> out;
  for (const auto& e : table<float>()) out.push_back(e.first);
  return out;
}

template std::unique_ptr<Layer<float>> make_layer<float>(const std::string&, const std::string&, const std::vector<Shape>&,
                                                         const std::vector<std::string>&, const LayerConfig&);
template std::unique_ptr<Layer<double>> make_layer<double>(const std::string&, const std::string&,
                                                           const std::vector<Shape>&, const std::vector<std::string>&,
                                                           const LayerConfig&);

}  // namespace cnnbp
