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
#include "core/memory.h"
#include "core/parallel.h"
#include "core/random.h"
#include "kernels/bf16.h"

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
    : k_(&kernels<T>()), input_shape_(input_shape), input_size_(0) {
  CNNBP_CHECK(!input_shape.empty(), "Input: expected a shape with at least one axis, got ()");
  for (int d : input_shape) CNNBP_CHECK(d > 0, "Input: expected positive dimensions, got shape ", shape_str(input_shape));
  input_size_ = checked_numel("Input", input_shape);
  g_live_networks.fetch_add(1);  // (last: a throwing constructor runs no destructor)
}

template <typename T>
void Network<T>::set_precision(const std::string& name) {
  if (name == "float32" || name == "float64") {
    CNNBP_CHECK(name == (std::is_same<T, float>::value ? "float32" : "float64"), "precision '", name,
                "' does not match this network's dtype");
    k_ = &kernels<T>();
  } else if (name == "mixed_bfloat16") {
    if constexpr (std::is_same<T, float>::value) k_ = &kernels_bf16();
    else throw std::invalid_argument("precision 'mixed_bfloat16' needs a float32 model, this one is float64");
  } else {
    throw std::invalid_argument("precision: expected 'float32', 'float64' or 'mixed_bfloat16', got '" + name + "'");
  }
  precision_ = name;
  planned_threads_ = 0;  // the next pass sizes the workspace for the new kernels
}

template <typename T>
const Shape& Network<T>::tensor_shape(int t) const {
  CNNBP_CHECK_INDEX(t >= -1 && t < int(layers_.size()), "tensor index ", t, " out of range (", layers_.size(),
                    " nodes)");
  return t < 0 ? input_shape_ : layers_[t]->out_shape;
}

template <typename T>
int Network<T>::add(std::unique_ptr<Layer<T>> layer, const std::vector<int>& inputs) {
  CNNBP_CHECK(!finalized_, "cannot add layer '", layer->name, "' after the model was built");
  const int n = int(layers_.size());
  CNNBP_CHECK(inputs.size() == layer->in_shapes.size(), layer->name, " (", layer->kind(), "): expected ",
              layer->in_shapes.size(), " input(s), got ", inputs.size());
  for (size_t j = 0; j < inputs.size(); ++j) {
    const int t = inputs[j];
    CNNBP_CHECK_INDEX(t >= -1 && t < n, layer->name, ": input ", j, " refers to node ", t, ", but the network has ", n,
                      " nodes (inputs must come before the layer)");
    CNNBP_CHECK(layer->in_shapes[j] == tensor_shape(t), layer->name, " (", layer->kind(), "): expected input shape ",
                shape_str(layer->in_shapes[j], true), " from ", t < 0 ? std::string("the model input") : layers_[t]->name,
                ", got ", shape_str(tensor_shape(t), true));
  }
  root_.push_back(layer->is_alias() ? root(inputs.at(0)) : n);
  inputs_.push_back(inputs);
  layers_.push_back(std::move(layer));
  return n;
}

template <typename T>
int Network<T>::add(std::unique_ptr<Layer<T>> layer) {
  return add(std::move(layer), {int(layers_.size()) - 1});
}

namespace {
// Rounded up so that each parameter stays 64-byte aligned inside its flat buffer.
inline int64_t aligned16(int64_t n) { return (n + 15) / 16 * 16; }

// Of the slots s with usable(s), the one for `need` elements per sample: the smallest that fits,
// else the largest (to be grown); -1 when none is usable.
template <typename Usable>
int best_fit_slot(const std::vector<int64_t>& size, int64_t need, Usable&& usable) {
  int best = -1;
  for (int s = 0; s < int(size.size()); ++s) {
    if (!usable(s)) continue;
    if (best < 0) { best = s; continue; }
    const bool fits = size[s] >= need, best_fits = size[best] >= need;
    if (fits != best_fits ? fits : (fits ? size[s] < size[best] : size[s] > size[best])) best = s;
  }
  return best;
}
}  // namespace

template <typename T>
void Network<T>::finalize(uint64_t seed, const std::vector<int64_t>& keys) {
  CNNBP_CHECK(!finalized_, "model already built");
  const size_t L = layers_.size();
  CNNBP_CHECK(keys.empty() || keys.size() == L, "finalize: expected ", L, " node keys, got ", keys.size());
  key_.resize(L);
  for (size_t i = 0; i < L; ++i) key_[i] = keys.empty() ? int64_t(i) : keys[i];
  std::vector<size_t> by_key(L);  // nodes in key order: the flat buffers' layout
  for (size_t i = 0; i < L; ++i) by_key[i] = i;
  std::stable_sort(by_key.begin(), by_key.end(), [&](size_t a, size_t b) { return key_[a] < key_[b]; });
  last_consumer_.assign(L, -1);
  for (size_t i = 0; i < L; ++i)
    for (int t : inputs_[i])
      if (t >= 0) last_consumer_[t] = std::max(last_consumer_[t], int(i));
  for (size_t i = 0; i + 1 < L; ++i)
    CNNBP_CHECK(last_consumer_[i] >= 0, "layer '", layers_[i]->name, "': its output is not used by the model's output ('",
                layers_.back()->name, "')");
  int64_t off = 0, soff = 0;
  size_t nin = 0;
  xoff_.assign(L + 1, 0);
  for (size_t i : by_key) {
    for (auto& p : layers_[i]->params) {
      p.offset = off;
      off += aligned16(p.size);
    }
    for (auto& p : layers_[i]->state) {
      p.offset = soff;
      soff += aligned16(p.size);
    }
  }
  for (size_t i = 0; i < L; ++i) {
    xoff_[i] = nin;
    nin += inputs_[i].size();
  }
  xoff_[L] = nin;
  xptr_.assign(nin, nullptr);
  dxptr_.assign(nin, nullptr);
  dxacc_.assign(nin, 0);
  gwritten_.assign(L, 0);
  num_params_ = off;
  num_state_ = soff;
  {
    // The budget before anything is allocated: weights, their gradients, the state.
    const ParamInfo* big = nullptr;
    const Layer<T>* owner = nullptr;
    for (const auto& l : layers_)
      for (const auto& p : l->params)
        if (!big || p.size > big->size) {
          big = &p;
          owner = l.get();
        }
    check_memory_budget(int64_t(sizeof(T)) * (2 * off + soff), "the model's weights and their gradients",
                        big ? detail::concat(off, " parameters; the largest: '", owner->name, "' ", big->name, " ",
                                             shape_str(big->shape))
                            : std::string());
  }
  params_.reserve(size_t(off) + 16);
  grads_.reserve(size_t(off) + 16);
  state_.reserve(size_t(soff) + 16);
  params_.zero();
  grads_.zero();
  state_.zero();
  for (auto& l : layers_) {
    l->pbase = params_.data();
    l->gbase = grads_.data();
    l->sbase = state_.data();
  }
  finalized_ = true;
  train_layers_ = L;
  // Inference folding pairs: a convolution read only by a BatchNormalization.
  fold_into_.assign(L, -1);
  skipped_.assign(L, 0);
  std::vector<int> readers(L, 0);
  for (size_t i = 0; i < L; ++i)
    for (int t : inputs_[i])
      if (t >= 0) ++readers[t];
  int64_t most = 0;
  fold_from_.assign(L, -1);
  for (size_t j = 0; j < L; ++j) {  // (a BatchNormalization's second input: the residual it adds)
    if (inputs_[j].empty() || inputs_[j].size() > 2 || inputs_[j][0] < 0) continue;
    const int i = inputs_[j][0];
    if (readers[i] == 1 && layers_[i]->can_fold_affine() && layers_[j]->has_inference_affine()) {
      fold_into_[i] = int(j);
      fold_from_[j] = i;
      most = std::max(most, int64_t(layers_[j]->out_shape.back()));
    }
  }
  if (most > 0) fold_affine_.reserve(size_t(2 * most));
  // ReLU derivative in max pooling's backward: a layer with a ReLU output read by one max pooling
  // and nothing else. The ReLU's backward pass over the whole (unpooled) tensor goes away; the
  // pooling keeps its (4x smaller) output to know the sign.
  relu_from_.assign(L, -1);
  for (size_t j = 0; j < L; ++j) {
    layers_[j]->relu_pair = false;
    if (inputs_[j].size() != 1 || inputs_[j][0] < 0) continue;
    const int i = inputs_[j][0];
    if (readers[i] == 1 && !layers_[i]->is_alias() && layers_[i]->relu_output() && layers_[j]->takes_relu_grad()) {
      relu_from_[j] = i;
      layers_[j]->relu_pair = true;
    }
  }
  // Pooling fused into the convolution before it (run_forward, pool_fused): the pooling is the
  // convolution's only reader and runs right after it.
  pool_into_.assign(L, -1);
  for (size_t j = 1; j < L; ++j) {
    if (inputs_[j].size() != 1 || inputs_[j][0] != int(j) - 1) continue;
    const int i = int(j) - 1;
    if (readers[i] == 1 && !layers_[i]->is_alias() && layers_[j]->pools_images()) pool_into_[i] = int(j);
  }
  // Prologue fusion (run_forward, pre_fused): a BatchNormalization+ReLU whose only reader is a
  // layer that can apply it as it loads its input.
  pre_into_.assign(L, -1);
  for (size_t j = 0; j < L; ++j) {
    if (inputs_[j].size() != 1 || inputs_[j][0] < 0) continue;
    const int i = inputs_[j][0];
    if (readers[i] == 1 && layers_[i]->gives_prologue() && inputs_[i].size() == 1) pre_into_[i] = int(j);
  }
  keep_.assign(L, 0);
  plan_activations();
  plan_gradients();
  update_segments();
  initialize(seed);
}

template <typename T>
void Network<T>::plan_activations() {
  // A node's output is kept from forward to backward when backward reads it (its producer's or a
  // reader's backward), when it is a prediction the loss reads (the last node, and the one before
  // a final activation fused into the loss), or when a caller asked to keep it. Any other output
  // is dead once its last reader has run, and a later output can take its buffer: slots are handed
  // out in forward order, a free one of sufficient size (the smallest) first, else the largest free
  // one grown, else a new one.
  //
  // An output that only readers' backward passes read (not its producer's, not the loss, not the
  // caller) is recomputed rather than kept when its producer can do that from inputs that are
  // themselves kept and not recomputed (BatchNormalization+ReLU after a convolution: the
  // convolution's output is kept for the normalisation's backward; a block's last normalisation
  // with its residual and ReLU, when the residual is kept). The reader's backward gets it in a
  // slot free by then (below), so a reader may take at most one recomputed input.
  const int L = int(layers_.size());
  std::vector<char> kept(L, 0), pinned(L, 0);  // pinned: kept for a reason other than a reader's backward
  std::vector<int> last_read(L, -1);
  for (int i = 0; i < L; ++i) {
    const Layer<T>& l = *layers_[i];
    if (l.is_alias()) continue;
    for (size_t j = 0; j < inputs_[i].size(); ++j) {
      const int r = root(inputs_[i][j]);
      if (r < 0) continue;
      last_read[r] = std::max(last_read[r], i);
      if (l.backward_reads_input(int(j))) kept[r] = 1;
    }
    if (l.backward_reads_output()) kept[i] = pinned[i] = 1;
  }
  for (int i = std::max(0, L - 2); i < L; ++i)
    if (root(i) >= 0) kept[root(i)] = pinned[root(i)] = 1;
  for (int i = 0; i < L; ++i)
    if (keep_[i] && root(i) >= 0) kept[root(i)] = pinned[root(i)] = 1;
  recomputed_.assign(L, 0);
  for (int r = 0; r < L; ++r) {
    const Layer<T>& l = *layers_[r];
    if (!kept[r] || pinned[r] || l.is_alias() || !l.can_recompute_output() || inputs_[r].size() > 2) continue;
    bool ok = true;
    for (int t : inputs_[r]) {
      const int q = root(t);
      ok = ok && q >= 0 && kept[q] && !recomputed_[q];
    }
    recomputed_[r] = ok;
  }
  for (int i = 0; i < L; ++i) {  // one recomputed input per reader whose backward reads it
    if (layers_[i]->is_alias()) continue;
    int first = -1;
    for (size_t j = 0; j < inputs_[i].size(); ++j) {
      const int r = root(inputs_[i][j]);
      if (r < 0 || !recomputed_[r] || r == first || !layers_[i]->backward_reads_input(int(j))) continue;
      if (first < 0) first = r;
      else recomputed_[r] = 0;
    }
  }
  recompute_size_ = 0;
  for (int r = 0; r < L; ++r)
    if (recomputed_[r]) {
      kept[r] = 0;
      recompute_size_ = std::max(recompute_size_, layers_[r]->out_size);
    }
  aslot_.assign(L, -1);
  aslot_size_.clear();
  std::vector<char> busy;
  std::vector<int> live;  // dead-after-reading tensors whose slot is still taken
  for (int i = 0; i < L; ++i) {
    for (size_t q = 0; q < live.size();) {
      if (last_read[live[q]] < i) {
        busy[aslot_[live[q]]] = 0;
        live[q] = live.back();
        live.pop_back();
      } else {
        ++q;
      }
    }
    if (layers_[i]->is_alias()) continue;
    const int64_t need = layers_[i]->out_size;
    // A layer that may write over an input (elementwise) takes its slot when this node is the
    // input's last reader and reads it once (a residual added in place).
    int over = -1;
    for (size_t j = 0; j < inputs_[i].size() && over < 0; ++j) {
      const int r = root(inputs_[i][j]);
      if (r < 0 || kept[r] || last_read[r] != i || !layers_[i]->can_overwrite_input(int(j)) ||
          aslot_size_[aslot_[r]] < need)
        continue;
      int reads = 0;
      for (int t : inputs_[i]) reads += root(t) == r;
      if (reads == 1) over = r;
    }
    if (over >= 0) {
      aslot_[i] = aslot_[over];
      live.erase(std::find(live.begin(), live.end(), over));
      if (!kept[i]) live.push_back(i);
      continue;
    }
    int best = best_fit_slot(aslot_size_, need, [&](int s) { return !busy[s]; });
    if (best < 0) {
      best = int(busy.size());
      busy.push_back(0);
      aslot_size_.push_back(0);
    }
    aslot_size_[best] = std::max(aslot_size_[best], need);
    busy[best] = 1;
    aslot_[i] = best;
    if (!kept[i]) live.push_back(i);
  }
  // Inference folding reads the convolution's input at the BatchNormalization's turn and writes
  // the latter's output: only where nothing in between wrote over that input, and not where the
  // output is written over the residual the normalisation adds.
  fold_ok_.assign(L, 0);
  for (int i = 0; i < L; ++i) {
    const int f = fold_into_[i];
    if (f < 0) continue;
    const int src = root(inputs_[i][0]);
    bool ok = inputs_[f].size() < 2 || root(inputs_[f][1]) < 0 || aslot_[root(inputs_[f][1])] != aslot_[f];
    for (int m = i + 1; ok && src >= 0 && m <= f; ++m) ok = layers_[m]->is_alias() || aslot_[m] != aslot_[src];
    fold_ok_[i] = ok;
  }
  // Where a reader's recomputed input goes: an activation slot whose last tensor is dead by then.
  // Backward runs nodes from last to first; a slot is free at node p's backward when the last
  // tensor the forward put in it is not kept, or is kept only for backward passes of nodes after
  // p (a tensor kept for the caller or the loss never frees its slot). The smallest free slot
  // that fits, else the largest grown, else a new one.
  // needed[o]: the first (lowest) node whose backward reads tensor o, directly or to recompute
  // an input of its own from o; -1 when the caller or the loss reads it afterwards.
  std::vector<int> needed(L, L + 1);
  for (int o = 0; o < L; ++o) {
    if (pinned[o]) needed[o] = -1;
    else if (layers_[o]->backward_reads_output()) needed[o] = std::min(needed[o], o);
  }
  for (int j = 0; j < L; ++j) {
    if (layers_[j]->is_alias()) continue;
    for (size_t q = 0; q < inputs_[j].size(); ++q) {
      const int r = root(inputs_[j][q]);
      if (r < 0 || !layers_[j]->backward_reads_input(int(q))) continue;
      if (needed[r] >= 0) needed[r] = std::min(needed[r], j);
      if (recomputed_[r])
        for (int t : inputs_[r])
          if (needed[root(t)] >= 0) needed[root(t)] = std::min(needed[root(t)], j);
    }
  }
  std::vector<int> owner(aslot_size_.size(), -1), free_below(aslot_size_.size(), L + 1);
  for (int i = 0; i < L; ++i)
    if (aslot_[i] >= 0) owner[aslot_[i]] = i;
  for (size_t sl = 0; sl < owner.size(); ++sl)
    if (kept[owner[sl]]) free_below[sl] = needed[owner[sl]];
  // A recomputed output is computed once per training step, for the first of its readers that
  // backward visits, and stays in its slot until the last, where a slot of its size is free from
  // the first reader's backward (the highest index, hi) to the last one's (lo) and no other
  // recomputed output holds it in between; otherwise each reader computes it again, in a slot
  // free at its own backward (grown, or a new one, if need be).
  std::vector<int> lo(L, L), hi(L, -1);
  for (int p = 0; p < L; ++p) {
    if (layers_[p]->is_alias()) continue;
    for (size_t q = 0; q < inputs_[p].size(); ++q) {
      const int r = root(inputs_[p][q]);
      if (r < 0 || !recomputed_[r] || !layers_[p]->backward_reads_input(int(q))) continue;
      lo[r] = std::min(lo[r], p);
      hi[r] = std::max(hi[r], p);
    }
  }
  std::vector<std::vector<std::pair<int, int>>> held(owner.size());  // per slot: [lo, hi] taken
  auto usable = [&](int sl, int from, int to) {
    if (free_below[sl] <= to) return false;
    for (const auto& h : held[sl])
      if (h.first <= to && from <= h.second) return false;
    return true;
  };
  rshared_.assign(L, -1);
  for (int r = L - 1; r >= 0; --r) {
    if (!recomputed_[r] || hi[r] < 0) continue;
    const int64_t need = layers_[r]->out_size;
    const int best =
        best_fit_slot(aslot_size_, need, [&](int sl) { return aslot_size_[sl] >= need && usable(sl, lo[r], hi[r]); });
    if (best < 0) continue;
    held[best].push_back({lo[r], hi[r]});
    rshared_[r] = best;
  }
  rslot_.assign(L, -1);
  for (int p = L - 1; p >= 0; --p) {
    if (layers_[p]->is_alias()) continue;
    for (size_t q = 0; q < inputs_[p].size(); ++q) {
      const int r = root(inputs_[p][q]);
      if (r < 0 || !recomputed_[r] || rshared_[r] >= 0 || !layers_[p]->backward_reads_input(int(q))) continue;
      const int64_t need = layers_[r]->out_size;
      int best = best_fit_slot(aslot_size_, need, [&](int sl) { return usable(sl, p, p); });
      if (best < 0) {
        best = int(aslot_size_.size());
        aslot_size_.push_back(0);
        owner.push_back(-1);
        free_below.push_back(L + 1);
        held.emplace_back();
      }
      aslot_size_[best] = std::max(aslot_size_[best], need);
      held[best].push_back({p, p});
      rslot_[p] = best;
    }
  }
  aslot_owner_.assign(aslot_size_.size(), -1);
  planned_threads_ = 0;  // the next pass reserves the slots
}

template <typename T>
void Network<T>::plan_gradients() {
  // Backward visits nodes from last to first. The gradient of node r's output is live from the
  // first visit of a node reading it (the largest consumer index; the seed for the last node)
  // until node r itself has run. Slots are handed out greedily over that schedule and reused once
  // free, so a chain needs two, as ping-pong buffers.
  const int L = int(layers_.size());
  std::vector<int> live_from(L, -1);
  std::vector<int> edges(L + 1, 0);  // non-alias reads of each root (index r + 1; 0: the model input)
  for (int i = 0; i < L; ++i) {
    if (layers_[i]->is_alias()) continue;
    for (int t : inputs_[i]) {
      const int r = root(t);
      ++edges[r + 1];
      if (r >= 0) live_from[r] = std::max(live_from[r], i);
    }
  }
  if (L > 0 && root(L - 1) >= 0) live_from[root(L - 1)] = L;
  gslot_.assign(L, -1);
  slot_size_.clear();
  std::vector<int> free_slots;
  std::vector<std::vector<int>> starts(L + 1);
  for (int r = 0; r < L; ++r)
    if (!layers_[r]->is_alias() && live_from[r] >= 0) starts[live_from[r]].push_back(r);
  for (int p = L; p >= 0; --p) {
    for (int r : starts[p]) {
      const int64_t need = layers_[r]->out_size;
      int best = -1;
      for (size_t f = 0; f < free_slots.size(); ++f) {
        const int s = free_slots[f];
        const bool fits = slot_size_[s] >= need;
        if (best < 0) { best = int(f); continue; }
        const int b = free_slots[best];
        const bool bfits = slot_size_[b] >= need;
        if ((fits && (!bfits || slot_size_[s] < slot_size_[b])) || (!fits && !bfits && slot_size_[s] > slot_size_[b]))
          best = int(f);
      }
      int slot;
      if (best >= 0) {
        slot = free_slots[best];
        free_slots.erase(free_slots.begin() + best);
        slot_size_[slot] = std::max(slot_size_[slot], need);
      } else {
        slot = int(slot_size_.size());
        slot_size_.push_back(need);
      }
      gslot_[r] = slot;
    }
    if (p < L && !layers_[p]->is_alias() && gslot_[p] >= 0) free_slots.push_back(gslot_[p]);
  }
  // A layer that cannot add into its input gradient writes a fresh one into acc_tmp_ first when
  // the tensor has other readers; the loss gradient of an output that is the input itself lands
  // there too.
  acc_tmp_size_ = 0;
  for (int i = 0; i < L; ++i) {
    if (layers_[i]->is_alias() || layers_[i]->accumulates()) continue;
    for (int t : inputs_[i])
      if (edges[root(t) + 1] > 1) acc_tmp_size_ = std::max(acc_tmp_size_, shape_numel(tensor_shape(t)));
  }
  // (the loss may be taken at node L-2 when a final softmax/sigmoid is fused into it)
  if ((L > 0 && root(L - 1) < 0) || (L > 1 && root(L - 2) < 0)) acc_tmp_size_ = std::max(acc_tmp_size_, input_size_);
  edges_.assign(edges.begin(), edges.end());
}

template <typename T>
void Network<T>::update_segments() {
  segments_.clear();
  for (auto& l : layers_) {
    if (!l->trainable) continue;
    for (const ParamInfo& p : l->params) {
      const int64_t b = p.offset, e = p.offset + aligned16(p.size);
      if (!segments_.empty() && segments_.back().second == b) segments_.back().second = e;
      else segments_.push_back({b, e});
    }
  }
}

template <typename T>
void Network<T>::set_trainable(size_t i, bool on) {
  CNNBP_CHECK_INDEX(i < layers_.size(), "set_trainable: node ", i, " out of range");
  layers_[i]->trainable = on;
  update_segments();
}

template <typename T>
void Network<T>::initialize(uint64_t seed) {
  for (size_t li = 0; li < layers_.size(); ++li) {
    for (size_t pi = 0; pi < layers_[li]->params.size(); ++pi) {
      const ParamInfo& p = layers_[li]->params[pi];
      init_param(params_.data() + p.offset, p, seed, uint64_t(key_[li]) * 16 + pi);
    }
    for (size_t si = 0; si < layers_[li]->state.size(); ++si) {
      const ParamInfo& p = layers_[li]->state[si];
      init_param(state_.data() + p.offset, p, seed, uint64_t(key_[li]) * 16 + 8 + si);
    }
  }
  reset_optimizer_state();
  state_pending_ = false;
}

template <typename T>
int Network<T>::output_classes() const {
  return int(shape_numel(train_layers_ ? layers_[train_layers_ - 1]->out_shape : input_shape_));
}

template <typename T>
void Network<T>::set_loss(LossKind kind, double eps, bool fuse, double delta, double smoothing) {
  CNNBP_CHECK(finalized_, "model is not built");
  CNNBP_CHECK(smoothing >= 0 && smoothing <= 1, "label_smoothing: expected a value in [0, 1], got ", smoothing);
  CNNBP_CHECK(smoothing == 0 || kind == LossKind::cce || kind == LossKind::sparse_cce || kind == LossKind::bce ||
                  kind == LossKind::softmax_ce || kind == LossKind::sparse_softmax_ce || kind == LossKind::bce_logits,
              "label_smoothing: only the cross-entropies smooth their labels, not ", kLossNames[int(kind)]);
  smoothing_ = smoothing;
  loss_ = {kind, eps, delta};
  train_layers_ = layers_.size();
  if (fuse && layers_.size() >= 2) {
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
  switch (opt_.kind) {
    case OptKind::sgd: return opt_.momentum != 0.0 ? 1 : 0;
    case OptKind::adagrad:
    case OptKind::lion: return 1;
    case OptKind::rmsprop: return 1 + (opt_.momentum > 0 ? 1 : 0) + (opt_.centered ? 1 : 0);
    default: return 2;
  }
}

// Zero slots (Adagrad's accumulator starts at its initial value) and step 0.
template <typename T>
void Network<T>::reset_optimizer_state() {
  m_.zero();
  v_.zero();
  w_.zero();
  if (opt_set_ && opt_.kind == OptKind::adagrad && m_.data()) {
    T* s = m_.data();
    const T a = T(opt_.initial_accumulator);
    for (int64_t i = 0; i < num_params_; ++i) s[i] = a;
  }
  iterations_ = 0;
}

template <typename T>
void Network<T>::set_optimizer(const OptimizerConfig& cfg) {
  CNNBP_CHECK(finalized_, "model is not built");
  CNNBP_CHECK(cfg.lr >= 0 && std::isfinite(cfg.lr), "optimizer: expected learning_rate >= 0, got ", cfg.lr);
  CNNBP_CHECK(cfg.momentum >= 0 && cfg.momentum < 1.0 + 1e-12, "optimizer: expected 0 <= momentum <= 1, got ", cfg.momentum);
  CNNBP_CHECK(cfg.weight_decay >= 0 && std::isfinite(cfg.weight_decay), "optimizer: expected weight_decay >= 0, got ", cfg.weight_decay);
  CNNBP_CHECK(!cfg.nesterov || cfg.momentum > 0, "SGD: nesterov=True needs momentum > 0");
  CNNBP_CHECK(cfg.beta1 >= 0 && cfg.beta1 <= 1, "optimizer: expected 0 <= beta_1 <= 1, got ", cfg.beta1);
  CNNBP_CHECK(cfg.beta2 >= 0 && cfg.beta2 <= 1, "optimizer: expected 0 <= beta_2 <= 1, got ", cfg.beta2);
  CNNBP_CHECK(cfg.kind == OptKind::lion || (cfg.beta1 < 1 && cfg.beta2 < 1),
              "optimizer: expected beta_1 < 1 and beta_2 < 1, got ", cfg.beta1, ", ", cfg.beta2);
  CNNBP_CHECK(cfg.rho >= 0 && cfg.rho <= 1, "optimizer: expected 0 <= rho <= 1, got ", cfg.rho);
  CNNBP_CHECK(cfg.eps >= 0 && std::isfinite(cfg.eps), "optimizer: expected epsilon >= 0, got ", cfg.eps);
  CNNBP_CHECK(cfg.initial_accumulator >= 0 && std::isfinite(cfg.initial_accumulator),
              "Adagrad: expected initial_accumulator_value >= 0, got ", cfg.initial_accumulator);
  CNNBP_CHECK(int(cfg.kind) >= 0 && int(cfg.kind) <= int(OptKind::lion), "optimizer: unknown kind ", int(cfg.kind));
  // The slots keep their values when the same kind with the same slot layout is set again
  // (a recompile, a changed hyperparameter); anything else starts from step 0.
  const bool keep = opt_set_ && opt_.kind == cfg.kind && opt_.centered == cfg.centered &&
                    (opt_.momentum > 0) == (cfg.momentum > 0);
  const OptimizerConfig before = opt_;
  const bool was_set = opt_set_;
  opt_ = cfg;
  opt_set_ = true;
  if (keep) return;
  const int64_t slots = opt_state_count();
  try {
    check_memory_budget(int64_t(sizeof(T)) * num_params_ * slots, "the optimizer's state",
                        detail::concat(slots, " value(s) per parameter, ", num_params_, " parameters"));
    if (slots >= 1) m_.reserve(size_t(num_params_) + 16);
    if (slots >= 2) v_.reserve(size_t(num_params_) + 16);
    if (slots >= 3) w_.reserve(size_t(num_params_) + 16);
  } catch (...) {
    opt_ = before;
    opt_set_ = was_set;
    throw;
  }
  nadam_t_ = 0;
  nadam_product_ = 1.0;
  reset_optimizer_state();
}

template <typename T>
void Network<T>::plan(int N, int nt) {
  if (N <= planned_N_ && nt == planned_threads_) return;
  const int cap = N > planned_N_ ? N : planned_N_;
  {
    // The budget before the per-batch buffers grow (plan_bytes checks that every tensor of the
    // batch indexes with int in the kernels).
    const PlanBytes b = plan_bytes(cap, nt);
    check_memory_budget(b.activations + b.gradients + b.workspace + b.layers + int64_t(cap) * input_size_ * int64_t(sizeof(T)),
                        detail::concat("a batch of ", cap, " with ", nt, " thread(s)"),
                        detail::concat("activations ", b.activations, " bytes, gradients ", b.gradients,
                                       " bytes; the largest tensor: '", b.largest_name, "', ", b.largest, " bytes"));
  }
  aslots_.resize(aslot_size_.size());
  for (size_t s = 0; s < aslot_size_.size(); ++s) aslots_[s].reserve(size_t(cap) * aslot_size_[s]);
  int64_t ws = 0;
  for (size_t i = 0; i < layers_.size(); ++i) {
    Layer<T>& l = *layers_[i];
    l.plan(*k_, cap);
    if (fold_into_[i] >= 0) l.plan_fold();
    ws = std::max(ws, l.workspace(*k_, cap, nt));
    if (pool_into_[i] >= 0) ws = std::max(ws, layers_[pool_into_[i]]->pooled_workspace(*k_, l, nt));
  }
  dslots_.resize(slot_size_.size());
  for (size_t s = 0; s < slot_size_.size(); ++s) dslots_[s].reserve(size_t(cap) * slot_size_[s]);
  if (acc_tmp_size_ > 0) acc_tmp_.reserve(size_t(cap) * acc_tmp_size_);
  ws_.reserve(size_t(ws) + 16);
  planned_N_ = cap;
  planned_threads_ = nt;
}

template <typename T>
typename Network<T>::PlanBytes Network<T>::plan_bytes(int N, int nt) const {
  CNNBP_CHECK(N >= 0, "batch size must be >= 0, got ", N);
  CNNBP_CHECK(nt >= 1, "thread count must be >= 1, got ", nt);
  // Every tensor of the batch must also index with int in the kernels; past this check each
  // product below stays far from int64 overflow.
  for (const auto& l : layers_)
    checked_mul(l->name, "a batch tensor of", int64_t(N), std::max(l->in_size, l->out_size), kMaxSampleElems);
  checked_mul("the model input", "a batch tensor of", int64_t(N), input_size_, kMaxSampleElems);
  PlanBytes b;
  const int64_t e = int64_t(sizeof(T));
  b.params = num_params_ * e;
  b.grads = num_params_ * e;
  b.optimizer = opt_state_count() * num_params_ * e;
  b.state = num_state_ * e;
  int64_t ws = 0;
  for (int64_t s : aslot_size_) b.activations += int64_t(N) * s * e;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Layer<T>& l = *layers_[i];
    // Before finalize there is no fusion plan yet (pool_into_ is empty).
    if (i < pool_into_.size() && pool_into_[i] >= 0)
      ws = std::max(ws, layers_[pool_into_[i]]->pooled_workspace(*k_, l, nt));
    if (!l.is_alias()) {
      const int64_t a = int64_t(N) * l.out_size * e;
      if (a > b.largest) {
        b.largest = a;
        b.largest_name = l.name;
      }
    }
    ws = std::max(ws, l.workspace(*k_, N, nt));
    b.layers += l.plan_bytes(*k_, N);
  }
  for (int64_t s : slot_size_) b.gradients += int64_t(N) * s * e;
  b.gradients += int64_t(N) * acc_tmp_size_ * e;
  b.workspace = ws * e;
  return b;
}

template <typename T>
PassContext Network<T>::begin_pass(int N) {
  PassContext c;
  c.nthreads = get_num_threads();  // read once per pass: plan and kernels agree on it
  c.step = pass_step();
  plan(N, c.nthreads);
  return c;
}

template <typename T>
const T* Network<T>::act_ptr(int t) const {
  const int r = root(t);
  return r < 0 ? x_ : aslots_[aslot_[r]].data();
}

template <typename T>
int Network<T>::folded_pairs() const {
  int n = 0;
  for (size_t i = 0; i < fold_into_.size(); ++i) n += fold_into_[i] >= 0 && fold_ok_[i];
  return n;
}

template <typename T>
int Network<T>::pooled_pairs() const {
  return int(std::count(skipped_.begin(), skipped_.end(), char(3)));
}

template <typename T>
bool Network<T>::pool_fused(size_t i, int N, bool training) const {
  const int j = pool_into_[i];
  if (!pool_fusion_ || j < 0 || check_numerics_ || (training && monitor_read_)) return false;
  Layer<T>& l = *layers_[i];
  // A training pass's backward must not read the output never stored: the convolution's own
  // (a fused activation's derivative) unless the pooling applies the ReLU's derivative for it.
  if (training && l.backward_reads_output() && relu_from_[j] != int(i)) return false;
  // The pooled output is written while the convolution still reads its input: not into its buffer
  // (a convolution's input is kept for its weight gradient, so the plan never shares the two today).
  const int r = root(inputs_[i][0]);
  if (r >= 0 && aslot_[r] == aslot_[root(j)]) return false;
  // Small images cost more in per-call setup (weight packing, padding, dispatch) than the fusion
  // saves (LeNet-5's 28x28x6 and 10x10x16 outputs: 10 % slower steps fused; the seed model's
  // 30x30x32: 15 % faster).
  if (l.out_size < kPoolFusionMinElems) return false;
  return l.image_forward_ok(*k_, N);
}

template <typename T>
int Network<T>::prologue_pairs() const {
  return int(std::count(skipped_.begin(), skipped_.end(), char(4)));
}

template <typename T>
bool Network<T>::pre_fused(size_t r, int N, size_t upto) const {
  const int i = pre_into_[r];
  if (!prologue_fusion_ || i < 0 || size_t(i) >= upto || check_numerics_ || monitor_read_ || keep_[r]) return false;
  // (a convolution that runs per image with its pooling reads its input unchanged: the direct
  // kernels, which takes_prologue never answers for)
  if (pool_fusion_ && pool_into_[i] >= 0 && pool_fused(size_t(i), N, true)) return false;
  return layers_[i]->takes_prologue(*k_, N);
}

// Every pass of node l sets its prologue first (none: null), so no pass sees another's.
template <typename T>
void Network<T>::set_prologue(Layer<T>& l, int from) const {
  l.pre_scale = from >= 0 ? layers_[from]->prologue_scale() : nullptr;
  l.pre_shift = from >= 0 ? layers_[from]->prologue_shift() : nullptr;
}

template <typename T>
const T* Network<T>::activation(size_t i) const {
  CNNBP_CHECK_INDEX(i < last_upto_, "activation: layer index ", i, " out of range (last pass ran ", last_upto_, " layers)");
  CNNBP_CHECK(skipped_[i] != 1, "activation: layer '", layers_[i]->name, "' was folded into '",
              layers_[fold_into_[i]]->name, "' by predict/evaluate and kept no output; call forward(x) first");
  CNNBP_CHECK(skipped_[i] != 3, "activation: layer '", layers_[i]->name, "' ran image by image with '",
              layers_[pool_into_[i]]->name, "' (pooled as it went) and kept no output; call forward(x) first");
  CNNBP_CHECK(skipped_[i] != 4, "activation: layer '", layers_[i]->name, "' was applied by '",
              layers_[pre_into_[i]]->name, "' as it read its input (a training step) and kept no output; call "
              "forward(x) first");
  const int r = root(int(i));
  CNNBP_CHECK(r < 0 || aslot_owner_[aslot_[r]] == r, "activation: the output of layer '", layers_[i]->name,
              "' was not kept (no backward pass reads it, and a later layer reused its buffer); ask forward to keep "
              "it (keep=[", i, "])");
  const T* p = act_ptr(int(i));
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
void Network<T>::run_forward(const PassContext& c, const T* x, int N, bool training, size_t upto, bool fold,
                             bool pool) {
  if (training) {  // (an inference pass between a training pass and its update changes nothing)
    monitor_read_ = monitor_armed_ &&
                    (mon_passes_ % mon_.interval) * int64_t(mon_.samples) % mon_.interval < mon_.samples;
    if (monitor_read_) std::fill(mon_.out_step.begin(), mon_.out_step.end(), 0.0);
  }
  x_ = x;
  backward_ready_ = false;
  fold = fold && folding_ && !training;
  std::fill(skipped_.begin(), skipped_.end(), 0);
  for (size_t i = 0; i < upto; ++i) {
    Layer<T>& l = *layers_[i];
    if (l.is_alias()) continue;
    const T** xs = xptr_.data() + xoff_[i];
    for (size_t j = 0; j < inputs_[i].size(); ++j) xs[j] = act_ptr(inputs_[i][j]);
    const double t0 = profiling_ ? now_s() : 0.0;
    // Folding: a convolution and the BatchNormalization after it run as one pass at the latter's
    // turn (the residual a BatchNormalization may add is ready only then), into its output, where
    // plan_activations found the convolution's input intact until then (fold_ok_).
    const int f = fold && fold_ok_[i] ? fold_into_[i] : -1;
    if (f >= 0 && size_t(f) < upto) {
      skipped_[i] = 1;
      continue;
    }
    const int g = fold ? fold_from_[i] : -1;
    if (g >= 0 && skipped_[g] == 1) {
      const int C = l.out_shape.back();
      Act act = Act::linear;
      l.inference_affine(fold_affine_.data(), fold_affine_.data() + C, &act);
      const bool residual = inputs_[i].size() == 2;
      layers_[g]->forward_folded(*k_, c, N, act_ptr(inputs_[g][0]), out_ptr(int(i)), ws_.data(), fold_affine_.data(),
                                 fold_affine_.data() + C, residual ? Act::linear : act);
      if (residual) {  // the Add after it, in place: the same rounding as the layers apart
        const T* both[2] = {out_ptr(int(i)), xs[1]};
        k_->merge_forward(out_ptr(int(i)), both, 2, int64_t(N) * l.out_size, MergeOp::add, act == Act::relu);
      }
      aslot_owner_[aslot_[i]] = int(i);
      skipped_[i] = 2;
      if (profiling_) prof_.forward[g] += now_s() - t0;
      continue;
    }
    if (skipped_[i] == 2) {  // a pooling computed with the convolution before it
      if (profiling_) prof_.forward[i - 1] += now_s() - t0;
      continue;
    }
    const int pj = pool ? pool_into_[i] : -1;
    if (pj >= 0 && size_t(pj) < upto && pool_fused(i, N, training)) {
      layers_[pj]->forward_pooled(*k_, c, N, l, xs[0], out_ptr(pj), ws_.data());
      aslot_owner_[aslot_[pj]] = pj;
      skipped_[i] = 3;
      skipped_[pj] = 2;
      if (profiling_) prof_.forward[i] += now_s() - t0;
      continue;
    }
    // Prologue fusion: a training pass of train_step/compute_gradients (pool) leaves the output
    // of a BatchNormalization+ReLU to its reader, which reads the normalisation's input instead.
    if (pool && training && pre_into_[i] >= 0 && pre_fused(i, N, upto)) {
      l.forward_n(*k_, c, N, xs, nullptr, ws_.data(), training);
      skipped_[i] = 4;
      if (profiling_) prof_.forward[i] += now_s() - t0;
      continue;
    }
    const int pr = inputs_[i].size() == 1 ? root(inputs_[i][0]) : -1;
    const bool pre = pr >= 0 && skipped_[pr] == 4;
    if (pre) xs[0] = act_ptr(inputs_[pr][0]);
    set_prologue(l, pre ? pr : -1);
    l.forward_n(*k_, c, N, xs, out_ptr(int(i)), ws_.data(), training);
    aslot_owner_[aslot_[i]] = int(i);
    if (training && monitor_read_) monitor_output(i, out_ptr(int(i)), N, l.out_size);
    if (profiling_) prof_.forward[i] += now_s() - t0;
    if (check_numerics_ && training) check_finite(out_ptr(int(i)), N * l.out_size, l, "output");
  }
  if (training) state_pending_ = num_state_ > 0;
  if (training && monitor_armed_) {
    monitor_update_ = true;  // the update that follows this pass counts in the interval
    ++mon_passes_;
    if (monitor_read_) ++mon_slices_;  // (training && monitor_armed_ here)
  }
  last_N_ = N;
  last_upto_ = upto;
}

template <typename T>
void Network<T>::run_backward(const PassContext& c, int N, size_t from, int to, T* input_grad, const GradsReady* ready,
                              bool reuse_dead) {
  // The gradient of node from-1's output is in its buffer (gwritten_ says so); nodes (to, from)
  // run in reverse order, each writing (first reader visited) or adding (later ones) its input
  // gradients. A tensor gets a gradient only when something at or before it needs one: a
  // trainable node, the target `to`, or the model input when input_grad is given.
  const int L = int(layers_.size());
  const int to_root = root(to);
  need_.assign(L, 0);  // capacity kept: no allocation after the first pass
  const bool need_input = input_grad != nullptr && to_root < 0;
  for (int r = 0; r < L; ++r) {
    if (layers_[r]->is_alias()) continue;
    bool n = r == to_root;
    if (!n && r > to_root) {
      n = layers_[r]->train_params();
      for (int t : inputs_[r]) {
        const int q = root(t);
        n = n || (q < 0 ? need_input : need_[q] != 0);
      }
    }
    need_[r] = n;
  }
  for (int i = 0; i < L; ++i) layers_[i]->relu_grad_in = layers_[i]->relu_grad_done = false;
  rdone_.assign(L, 0);  // (capacity kept)
  bool input_written = false;
  for (int i = int(from) - 1; i > to_root; --i) {
    Layer<T>& l = *layers_[i];
    if (l.is_alias()) continue;
    if (relu_from_[i] >= 0 && relu_from_[i] != to_root)  // (a pass stopping there wants d(ReLU output))
      l.relu_grad_in = layers_[relu_from_[i]]->relu_grad_done = true;
    const bool reached = gwritten_[i] != 0;
    const size_t o = xoff_[i], nin = inputs_[i].size();
    bool any_dx = false;
    int tmp_j = -1;
    T* tmp_dst = nullptr;
    for (size_t j = 0; j < nin; ++j) {
      const int r = root(inputs_[i][j]);
      xptr_[o + j] = act_ptr(inputs_[i][j]);
      T* dst = nullptr;
      bool acc = false;
      if (reached && (r < 0 ? need_input : need_[r] != 0)) {
        dst = r < 0 ? input_grad : grad_ptr(r);
        acc = r < 0 ? input_written : gwritten_[r] != 0;
        if (r < 0) input_written = true;
        else gwritten_[r] = 1;
      }
      if (dst && acc && !l.accumulates()) {  // single-input layers only: see plan_gradients
        tmp_j = int(j);
        tmp_dst = dst;
        dst = acc_tmp_.data();
        acc = false;
      }
      dxptr_[o + j] = dst;
      dxacc_[o + j] = acc;
      any_dx = any_dx || dst;
    }
    // Prologue fusion (run_forward): this node reads its producer's input through the map.
    const int pr = nin == 1 ? root(inputs_[i][0]) : -1;
    const bool pre = pr >= 0 && skipped_[pr] == 4;
    if (pre) xptr_[o] = act_ptr(inputs_[pr][0]);
    if (reached && (any_dx || l.train_params())) {
      for (size_t j = 0; j < nin; ++j) {
        const int r = root(inputs_[i][j]);
        if (r < 0 || pre || !recomputed_[r] || !l.backward_reads_input(int(j))) continue;
        const double t0 = profiling_ ? now_s() : 0.0;  // (counted as the producer's backward time)
        // A training step writes over a slot whose contents no later part of this pass reads
        // (activation() refuses them from then on). Other passes may run again on the same
        // forward pass (backward_to, then backward): a buffer of their own, made on first use.
        // In a training step, the first reader visited computes it for the others where they
        // share a slot (rshared_, rdone_).
        const bool shared = reuse_dead && rshared_[r] >= 0;
        T* dst;
        if (reuse_dead) {
          const int sl = shared ? rshared_[r] : rslot_[i];
          dst = aslots_[sl].data();
          aslot_owner_[sl] = -1;
        } else {
          recompute_.reserve(size_t(planned_N_) * size_t(recompute_size_));
          dst = recompute_.data();
        }
        xptr_[o + j] = dst;
        if (shared && rdone_[r]) continue;
        const T* rx[2];  // (a recomputable layer has one or two inputs)
        for (size_t q = 0; q < inputs_[r].size() && q < 2; ++q) rx[q] = act_ptr(inputs_[r][q]);
        layers_[r]->recompute_output(*k_, N, rx, dst);
        rdone_[r] = 1;
        if (profiling_) prof_.backward[r] += now_s() - t0;
      }
      const double t0 = profiling_ ? now_s() : 0.0;
      set_prologue(l, pre ? pr : -1);
      l.backward_n(*k_, c, N, xptr_.data() + o, out_ptr(i), grad_ptr(i), dxptr_.data() + o,
                   reinterpret_cast<const bool*>(dxacc_.data() + o), ws_.data());
      if (tmp_j >= 0) k_->add_into(tmp_dst, acc_tmp_.data(), int64_t(N) * shape_numel(tensor_shape(inputs_[i][tmp_j])));
      if (profiling_) prof_.backward[i] += now_s() - t0;
      if (check_numerics_) {
        if (l.train_params())
          for (size_t p = 0; p < l.params.size(); ++p) check_finite(l.g(p), l.params[p].size, l, "parameter gradient");
        for (size_t j = 0; j < nin; ++j)
          if (dxptr_[o + j]) check_finite(dxptr_[o + j], N * shape_numel(l.in_shapes[j]), l, "input gradient");
      }
    }
    if (ready && !l.params.empty()) {
      int64_t b = l.params[0].offset, e = b;
      for (const ParamInfo& p : l.params) {
        b = std::min(b, p.offset);
        e = std::max(e, p.offset + p.size);
      }
      (*ready)(b, e);
    }
  }
  if (need_input && !input_written) std::memset(input_grad, 0, sizeof(T) * N * input_size_);
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
T* Network<T>::seed_grad(size_t node) {
  // The gradient of node `node`'s output starts a backward pass: clear the marks, point at its
  // buffer (an output that is the model input itself, through views, seeds acc_tmp_).
  std::fill(gwritten_.begin(), gwritten_.end(), char(0));
  const int r = root(int(node));
  if (r < 0) return acc_tmp_.data();
  gwritten_[r] = 1;
  return grad_ptr(r);
}

template <typename T>
StepResult Network<T>::compute_loss(const T* target, int N, bool want_grad, const T* sample_weight) {
  const size_t last = train_layers_ - 1;
  const T* out = act_ptr(int(last));
  const int K = output_classes();
  // Label smoothing: the loss reads smoothed dense targets (sparse labels expanded); the metrics
  // and the correct count read the labels as given.
  LossParams lp = loss_;
  const T* lt = target;
  if (smoothing_ > 0) {
    smooth_.reserve(size_t(planned_N_) * size_t(K));
    T* st = smooth_.data();
    const bool binary = lp.kind == LossKind::bce || lp.kind == LossKind::bce_logits;
    const double s = smoothing_, add = binary ? s / 2 : s / K;
    if (loss_is_sparse(lp.kind)) {
      for (int64_t i = 0; i < int64_t(N) * K; ++i) st[i] = T(add);
      for (int n = 0; n < N; ++n) st[int64_t(n) * K + int64_t(target[n])] = T(1.0 - s + add);
      lp.kind = lp.kind == LossKind::sparse_cce ? LossKind::cce : LossKind::softmax_ce;
    } else {
      for (int64_t i = 0; i < int64_t(N) * K; ++i) st[i] = T(double(target[i]) * (1.0 - s) + add);
    }
    lt = st;
  }
  double loss;
  T* dpred = want_grad ? seed_grad(last) : nullptr;
  if (!sample_weight) {
    loss = k_->loss(dpred, out, lt, N, K, lp);
  } else {
    // Per sample: loss_i and d loss_i / d pred_i, weighted by w_i / N (sum over the batch size).
    const int64_t tk = loss_is_sparse(lp.kind) ? 1 : K;
    loss = 0.0;
    for (int n = 0; n < N; ++n) {
      T* d = dpred ? dpred + int64_t(n) * K : nullptr;
      const double w = double(sample_weight[n]);
      loss += w * k_->loss(d, out + int64_t(n) * K, lt + n * tk, 1, K, lp);
      if (d) {
        const T f = T(w / N);
        for (int k = 0; k < K; ++k) d[k] *= f;
      }
    }
    loss /= N;
  }
  const bool logits = loss_.kind == LossKind::softmax_ce || loss_.kind == LossKind::sparse_softmax_ce ||
                      loss_.kind == LossKind::bce_logits;
  const int64_t correct = k_->count_correct(out, target, N, K, loss_is_sparse(loss_.kind), logits ? 0.0 : 0.5);
  if (!metrics_.empty()) {
    std::fill(metric_sums_.begin(), metric_sums_.end(), 0.0);
    const int conv = loss_.kind == LossKind::bce_logits ? 2 : (logits ? 1 : 0);
    double* o = metric_sums_.data();
    for (const MetricSpec& m : metrics_) {
      k_->metric_sums(o, out, target, N, K, loss_is_sparse(loss_.kind), conv, m);
      o += metric_size(m, K);
    }
  }
  return {loss, correct};
}

template <typename T>
void Network<T>::set_metrics(const std::vector<MetricSpec>& specs) {
  CNNBP_CHECK(finalized_, "model is not built");
  const int K = output_classes();
  int64_t total = 0;
  for (const MetricSpec& m : specs) {
    CNNBP_CHECK(int(m.kind) >= 0 && int(m.kind) < kMetricKinds, "metrics: unknown kind ", int(m.kind));
    CNNBP_CHECK(m.kind != MetricKind::top_k || (m.k >= 1), "metrics: top-k needs k >= 1, got ", m.k);
    CNNBP_CHECK(m.kind != MetricKind::confusion || (m.class_id >= -1 && m.class_id < K),
                "metrics: class_id must be in [0, ", K, "), got ", m.class_id);
    CNNBP_CHECK(m.kind != MetricKind::auc || (m.bins > 1 && m.bins <= 100000),
                "metrics: AUC needs 1 < num_thresholds <= 100000, got ", m.bins);
    CNNBP_CHECK(std::isfinite(m.threshold), "metrics: threshold must be finite");
    total += metric_size(m, K);
  }
  CNNBP_CHECK(total <= (int64_t(1) << 26), "metrics: ", total, " sums is too many");
  metrics_ = specs;
  metric_sums_.assign(size_t(total), 0.0);
}

template <typename T>
StepResult Network<T>::train_step(const T* x, const T* target, int N, const T* sample_weight) {
  CNNBP_CHECK(loss_set_ && opt_set_, "model is not compiled: call compile(optimizer=..., loss=...) first");
  CNNBP_CHECK(N > 0, "train_step: expected a non-empty batch");
  CNNBP_CHECK(!layers_.empty(), "train_step: the model has no layers");
  check_target(target, N);
  const PassContext c = begin_pass(N);
  ThreadScope pin(c.nthreads);
  run_forward(c, x, N, true, train_layers_, false, true);
  double t0 = profiling_ ? now_s() : 0.0;
  StepResult r = compute_loss(target, N, true, sample_weight);
  if (!reg_.empty()) r.loss += regularization_loss();
  if (profiling_) prof_.loss += now_s() - t0;
  if (!std::isfinite(r.loss)) {
    state_pending_ = false;  // the batch statistics of a failed step are never committed
    monitor_update_ = false;  // nor is its monitor record paired with a later step's update
    throw NumericalError(detail::concat("loss is ", std::isnan(r.loss) ? "nan" : (r.loss > 0 ? "inf" : "-inf"),
                                        " at step ", iterations_ + 1,
                                        "; weights were not updated"));
  }
  try {
    run_backward(c, N, train_layers_, -1, nullptr, nullptr, true);
  } catch (...) {
    state_pending_ = false;
    throw;
  }
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
                                         const GradsReady& grads_ready, const T* sample_weight) {
  CNNBP_CHECK(loss_set_ && opt_set_, "model is not compiled: call compile(optimizer=..., loss=...) first");
  CNNBP_CHECK(N > 0, "compute_gradients: expected a non-empty batch");
  CNNBP_CHECK(!layers_.empty(), "compute_gradients: the model has no layers");
  CNNBP_CHECK(std::isfinite(grad_scale), "compute_gradients: grad_scale must be finite, got ", grad_scale);
  check_target(target, N);
  const PassContext c = begin_pass(N);
  ThreadScope pin(c.nthreads);
  run_forward(c, x, N, true, train_layers_, false, true);
  StepResult r = compute_loss(target, N, true, sample_weight);
  // Each rank adds the whole penalty: the caller weighs the ranks' losses by their shares of the
  // global batch (summing to 1). Its gradient is added once, after the reduction (apply_update).
  if (!reg_.empty()) r.loss += regularization_loss();
  if (grad_scale != 1.0) {
    // Backward is linear in the loss gradient: scaling it scales every parameter gradient, so
    // each node's gradients are final (and can be reduced) as soon as its backward is done.
    const int root_out = root(int(train_layers_) - 1);
    T* d = root_out < 0 ? acc_tmp_.data() : grad_ptr(root_out);
    const int64_t n = int64_t(N) * layers_[train_layers_ - 1]->out_size;
    const T s = T(grad_scale);
    for (int64_t i = 0; i < n; ++i) d[i] *= s;
  }
  run_backward(c, N, train_layers_, -1, nullptr, grads_ready ? &grads_ready : nullptr, true);
  return r;
}

template <typename T>
void Network<T>::forward(const T* x, int N, bool training, const std::vector<int>& keep) {
  CNNBP_CHECK(N > 0, "forward: expected a non-empty batch");
  std::vector<char> want(layers_.size(), 0);
  for (int i : keep) {
    CNNBP_CHECK_INDEX(i >= 0 && size_t(i) < layers_.size(), "forward: keep index ", i, " out of range (", layers_.size(),
                      " layers)");
    want[size_t(i)] = 1;
  }
  if (want != keep_) {  // a different set to keep: plan the activation slots again
    keep_ = want;
    plan_activations();
  }
  const PassContext c = begin_pass(N);
  ThreadScope pin(c.nthreads);
  input_copy_.reserve(size_t(planned_N_) * input_size_);
  std::memcpy(input_copy_.data(), x, sizeof(T) * N * input_size_);
  run_forward(c, input_copy_.data(), N, training, layers_.size());
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
  const PassContext c = begin_pass(N);
  ThreadScope pin(c.nthreads);
  StepResult r = compute_loss(target, N, true);
  if (input_grad && root(int(train_layers_) - 1) < 0) {
    std::memcpy(input_grad, acc_tmp_.data(), sizeof(T) * N * input_size_);
    return r;
  }
  run_backward(c, N, train_layers_, -1, input_grad);
  return r;
}

template <typename T>
void Network<T>::backward_from_output(const T* dout, int N, T* input_grad) {
  CNNBP_CHECK(backward_ready_, "backward: call forward(x) first (train_step, evaluate and predict do not keep "
              "what backward needs)");
  CNNBP_CHECK(last_N_ == N && last_upto_ == layers_.size() && N > 0,
              "backward: expected a batch of ", last_N_, " (the last forward pass), got ", N);
  if (layers_.empty() || root(int(layers_.size()) - 1) < 0) {
    if (input_grad) std::memcpy(input_grad, dout, sizeof(T) * N * input_size_);
    return;
  }
  backward_to(dout, N, layers_.size(), -1, input_grad);
}

template <typename T>
void Network<T>::backward_to(const T* dout, int N, size_t from, int to, T* grad) {
  CNNBP_CHECK(backward_ready_, "backward: call forward(x) first (train_step, evaluate and predict do not keep "
              "what backward needs)");
  CNNBP_CHECK(last_N_ == N && last_upto_ == layers_.size() && N > 0,
              "backward: expected a batch of ", last_N_, " (the last forward pass), got ", N);
  CNNBP_CHECK_INDEX(from >= 1 && from <= layers_.size() && to >= -1 && to < int(from), "backward_to: need -1 <= to < from <= ",
                    layers_.size(), ", got to ", to, ", from ", from);
  const int64_t n_out = int64_t(N) * layers_[from - 1]->out_size;
  const int64_t n_to = int64_t(N) * shape_numel(tensor_shape(to));
  if (to == int(from) - 1) {
    std::memcpy(grad, dout, sizeof(T) * n_out);
    return;
  }
  const int to_root = root(to);
  // A view (Flatten) shares its input's gradient buffer; that is its own gradient only when
  // nothing else reads the tensor it views.
  CNNBP_CHECK(to < 0 || to_root == to || edges_[to_root + 1] == 1, "backward_to: layer '", layers_[to]->name,
              "' is a view of a tensor that other layers read too; ask for the gradient of its input");
  const PassContext c = begin_pass(N);
  ThreadScope pin(c.nthreads);
  T* seed = seed_grad(from - 1);
  if (root(int(from) - 1) < 0) {  // the output is a view of the input: nothing to run
    std::memcpy(grad, dout, sizeof(T) * n_out);
    return;
  }
  std::memcpy(seed, dout, sizeof(T) * n_out);
  run_backward(c, N, from, to, to < 0 ? grad : nullptr);
  if (to_root >= 0) {
    if (gwritten_[to_root]) std::memcpy(grad, grad_ptr(to_root), sizeof(T) * n_to);
    else std::memset(grad, 0, sizeof(T) * n_to);  // the output does not depend on it
  }
}

template <typename T>
void Network<T>::backward_between(const T* dout, int N, size_t from, size_t stop, T* grad) {
  CNNBP_CHECK_INDEX(stop < from && from <= layers_.size(), "backward_between: need 0 <= stop < from <= ",
                    layers_.size(), ", got stop ", stop, ", from ", from);
  backward_to(dout, N, from, inputs_[stop].at(0), grad);
}

template <typename T>
void Network<T>::apply_update() {
  CNNBP_CHECK(opt_set_, "model is not compiled: no optimizer set");
  ThreadScope pin(get_num_threads());  // a no-op inside a step's scope (same count)
  if (grad_cfg_.schedule.kind != ScheduleKind::constant) opt_.lr = schedule_lr(grad_cfg_.schedule, double(iterations_));
  ++iterations_;
  regularize_and_clip();
  const bool counted = monitor_update_, mon = counted && monitor_read_;
  monitor_update_ = monitor_read_ = false;
  if (counted) {
    ++mon_.steps;
    mon_.step = iterations_;
  }
  if (mon && num_params_ > 0) std::memcpy(mon_before_.data(), params_.data(), sizeof(T) * size_t(num_params_));
  AdaptiveParams ah{opt_.kind, opt_.lr, opt_.lr * opt_.weight_decay, opt_.beta1, opt_.beta2, opt_.rho, opt_.eps,
                    opt_.momentum, opt_.centered, 0.0, 0.0, 0.0};
  const double t = double(iterations_);
  if (opt_.kind == OptKind::adamax) {
    ah.c1 = opt_.lr / (1.0 - std::pow(opt_.beta1, t));
  } else if (opt_.kind == OptKind::nadam) {
    // P_t = mu_1 ... mu_t in double, carried from the previous step (recomputed after a resume).
    auto mu = [&](double s) { return opt_.beta1 * (1.0 - 0.5 * std::pow(0.96, s)); };
    if (nadam_t_ != iterations_ - 1) {
      nadam_product_ = 1.0;
      for (int64_t s = 1; s < iterations_; ++s) nadam_product_ *= mu(double(s));
    }
    nadam_product_ *= mu(t);
    nadam_t_ = iterations_;
    const double mu_t = mu(t), mu_next = mu(t + 1.0);
    ah.c1 = mu_next / (1.0 - nadam_product_ * mu_next);
    ah.c2 = (1.0 - mu_t) / (1.0 - nadam_product_);
    ah.c3 = 1.0 / (1.0 - std::pow(opt_.beta2, t));
  }
  for (const auto& sg : segments_) {
    const int64_t b = sg.first, n = sg.second - sg.first;
    if (opt_.kind == OptKind::sgd) {
      SgdParams h{opt_.lr, opt_.momentum, opt_.coupled_decay, opt_.nesterov, opt_.lr * opt_.weight_decay};
      k_->sgd_update(params_.data() + b, grads_.data() + b, m_.data() ? m_.data() + b : nullptr, n, h);
    } else if (opt_.kind == OptKind::adam) {
      AdamParams h{opt_.lr, opt_.beta1, opt_.beta2, opt_.eps, opt_.weight_decay, iterations_};
      k_->adam_update(params_.data() + b, grads_.data() + b, m_.data() + b, v_.data() + b, n, h);
    } else {
      // RMSprop's slots are v [, momentum] [, average]: the average sits in the last slot.
      T* s0 = m_.data() ? m_.data() + b : nullptr;
      T* s1 = v_.data() ? v_.data() + b : nullptr;
      T* s2 = w_.data() ? w_.data() + b : nullptr;
      if (opt_.kind == OptKind::rmsprop && opt_.centered && !(opt_.momentum > 0)) s2 = s1;
      k_->adaptive_update(params_.data() + b, grads_.data() + b, s0, s1, s2, n, ah);
    }
  }
  if (mon) monitor_update();
  if (state_pending_) {
    for (auto& l : layers_)
      if (!l->state.empty()) l->commit_state(*k_);
    state_pending_ = false;
  }
}

template <typename T>
void Network<T>::monitor_next(int steps, int samples) {
  CNNBP_CHECK(steps >= 1, "monitor_next: steps must be >= 1, got ", steps);
  CNNBP_CHECK(samples >= 0, "monitor_next: samples must be >= 0 (0: every step), got ", samples);
  if (!monitoring_) return;
  monitor_armed_ = true;
  monitor_update_ = monitor_read_ = false;  // a forward pass before this call belongs to no interval
  mon_.interval = steps;
  mon_.samples = samples == 0 ? steps : std::min(samples, steps);
  mon_.steps = mon_.sampled = 0;
  mon_passes_ = mon_slices_ = 0;
  std::fill(mon_.out.begin(), mon_.out.end(), 0.0);
  std::fill(mon_.param.begin(), mon_.param.end(), 0.0);
}

template <typename T>
void Network<T>::set_monitoring(bool on) {
  CNNBP_CHECK(finalized_, "model is not built");
  monitoring_ = on;
  monitor_armed_ = monitor_update_ = monitor_read_ = false;
  if (!on) return;
  mon_before_.reserve(size_t(num_params_) + 16);
  mon_.out.assign(layers_.size() * Monitor::kOutStats, 0.0);
  mon_.out_step.assign(layers_.size() * Monitor::kOutStats, 0.0);
  mon_.param_node.clear();
  for (size_t i = 0; i < layers_.size(); ++i)
    for (size_t p = 0; p < layers_[i]->params.size(); ++p) mon_.param_node.push_back(int(i));
  mon_.param.assign(Monitor::kParamStats * mon_.param_node.size(), 0.0);
  mon_.step = mon_.steps = mon_.sampled = 0;
  mon_.interval = mon_.samples = 1;
}

template <typename T>
void Network<T>::monitor_update() {
  // The step's norms per parameter tensor (|w| after the update, |g|, |dw| from the copy taken
  // before it), each tensor's three sums split into a fixed number of blocks reduced in order.
  constexpr int kBlocks = 16;
  double part[kBlocks][3];
  size_t q = 0;
  for (const auto& l : layers_)
    for (const ParamInfo& p : l->params) {
      const T* w = params_.data() + p.offset;
      const T* g = grads_.data() + p.offset;
      const T* w0 = mon_before_.data() + p.offset;
      const int64_t n = p.size;
      const int nb = n >= (int64_t(1) << 14) ? kBlocks : 1;
      parallel_for(nb, 1, [&](int64_t b0, int64_t b1, int) {
        for (int64_t bk = b0; bk < b1; ++bk) {
          const int64_t i0 = n * bk / nb;
          k_->param_norms(part[bk], w + i0, g + i0, w0 + i0, n * (bk + 1) / nb - i0);
        }
      });
      double ww = 0, gg = 0, dd = 0;
      for (int bk = 0; bk < nb; ++bk) {
        ww += part[bk][0];
        gg += part[bk][1];
        dd += part[bk][2];
      }
      const double nw = std::sqrt(ww), ng = std::sqrt(gg), nd = std::sqrt(dd);
      double* o = mon_.param.data() + Monitor::kParamStats * q;
      o[0] += nw;
      o[1] += ng;
      o[2] = std::max(o[2], ng);
      if (nw > 0) {
        o[3] += nd / nw;
        o[4] = std::max(o[4], nd / nw);
        o[5] += 1.0;
      }
      ++q;
    }
  for (size_t k = 0; k < mon_.out.size(); ++k) mon_.out[k] += mon_.out_step[k];
  ++mon_.sampled;
}

template <typename T>
void Network<T>::monitor_output(size_t node, const T* y, int N, int64_t per_sample) {
  // One read of a slice of the output just written: the interval's j-th read step (from 0) reads
  // samples [j*k, j*k + k) mod N, k = ceil(N / samples), cut at N (so the interval covers the
  // batch positions).
  // Partial sums (the kernel's, in double) over fixed blocks, added in block order.
  constexpr int S = 6;
  const int64_t k = (int64_t(N) + mon_.samples - 1) / mon_.samples;
  const int64_t s0 = (mon_slices_ * k) % N, ns = std::min<int64_t>(k, N - s0);
  y += s0 * per_sample;
  const int64_t n = ns * per_sample;
  const int nb = reduce_blocks(n / 4096);               // blocks of at least 4k elements
  const int64_t per_thread = std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(1, n / nb));  // ~32k each
  double part[kReduceBlocks][S] = {};
  parallel_blocks(nb, per_thread, [&](int b, int) {
    const int64_t i0 = block_begin(n, nb, b);
    k_->tensor_stats(part[b], y + i0, block_begin(n, nb, b + 1) - i0);
  });
  double* o = mon_.out_step.data() + node * Monitor::kOutStats;
  for (int k2 = 0; k2 < Monitor::kOutStats; ++k2) o[k2] = 0.0;
  for (int b = 0; b < nb; ++b)
    for (int k2 = 0; k2 < S; ++k2) o[k2] += part[b][k2];
  layers_[node]->batch_statistics(o + 6, o + 7);
}

template <typename T>
void Network<T>::predict(const T* x, int N, T* out) {
  if (N == 0) return;
  const PassContext c = begin_pass(N);
  ThreadScope pin(c.nthreads);
  run_forward(c, x, N, false, layers_.size(), true, true);
  const int64_t n = int64_t(N) * shape_numel(output_shape());
  std::memcpy(out, layers_.empty() ? x : act_ptr(int(layers_.size()) - 1), sizeof(T) * n);
}

template <typename T>
StepResult Network<T>::evaluate(const T* x, const T* target, int N, const T* sample_weight) {
  CNNBP_CHECK(loss_set_, "model is not compiled: call compile(...) before evaluate");
  CNNBP_CHECK(N > 0, "evaluate: expected a non-empty batch");
  CNNBP_CHECK(!layers_.empty(), "evaluate: the model has no layers");
  check_target(target, N);
  const PassContext c = begin_pass(N);
  ThreadScope pin(c.nthreads);
  run_forward(c, x, N, false, train_layers_, true, true);
  StepResult r = compute_loss(target, N, false, sample_weight);
  if (!reg_.empty()) r.loss += regularization_loss();
  return r;
}

template <typename T>
void Network<T>::set_gradient_config(const GradientConfig& g) {
  const int set = (g.clipnorm > 0) + (g.clipvalue > 0) + (g.global_clipnorm > 0);
  CNNBP_CHECK(set <= 1, "optimizer: only one of clipnorm, clipvalue and global_clipnorm can be set");
  const LrSchedule& h = g.schedule;
  if (h.kind == ScheduleKind::piecewise)
    CNNBP_CHECK(h.values.size() == h.boundaries.size() + 1, "PiecewiseConstantDecay: expected ",
                h.boundaries.size() + 1, " values for ", h.boundaries.size(), " boundaries, got ", h.values.size());
  CNNBP_CHECK(h.kind == ScheduleKind::constant || h.kind == ScheduleKind::piecewise || h.decay_steps > 0,
              "learning rate schedule: decay_steps must be > 0, got ", h.decay_steps);
  CNNBP_CHECK(!h.warmup || h.warmup_steps > 0, "CosineDecay: warmup_steps must be > 0 with a warmup_target");
  grad_cfg_ = g;
}

template <typename T>
double Network<T>::learning_rate_at(int64_t step) const {
  if (grad_cfg_.schedule.kind == ScheduleKind::constant) return opt_.lr;
  return schedule_lr(grad_cfg_.schedule, double(step));
}

template <typename T>
void Network<T>::set_regularizers(const std::vector<RegTerm>& terms) {
  for (const RegTerm& r : terms) {
    CNNBP_CHECK(r.node >= 0 && size_t(r.node) < layers_.size(), "regularizer: node ", r.node, " out of range");
    CNNBP_CHECK(r.offset >= 0 && r.size >= 0 && r.offset + r.size <= num_params_, "regularizer: range [", r.offset,
                ", ", r.offset + r.size, ") outside the ", num_params_, " parameters");
    CNNBP_CHECK(r.l1 >= 0 && r.l2 >= 0 && std::isfinite(r.l1) && std::isfinite(r.l2),
                "regularizer: l1 and l2 must be finite and >= 0, got ", r.l1, ", ", r.l2);
  }
  reg_ = terms;
}

template <typename T>
double Network<T>::regularization_loss() const {
  double total = 0.0;
  for (const RegTerm& r : reg_) {
    if (!layers_[size_t(r.node)]->train_params()) continue;
    const T* w = params_.data() + r.offset;
    double a = 0.0, q = 0.0;
    for (int64_t i = 0; i < r.size; ++i) {
      a += std::fabs(double(w[i]));
      q += double(w[i]) * double(w[i]);
    }
    total += r.l1 * a + r.l2 * q;
  }
  return total;
}

template <typename T>
void Network<T>::regularize_and_clip() {
  T* G = grads_.data();
  for (const RegTerm& r : reg_) {
    if (!layers_[size_t(r.node)]->train_params()) continue;
    const T* w = params_.data() + r.offset;
    T* g = grads_.data() + r.offset;
    const T l1 = T(r.l1), l2x2 = T(2 * r.l2);
    parallel_for(r.size, 4096, [&](int64_t i0, int64_t i1, int) {
      for (int64_t i = i0; i < i1; ++i) g[i] += l2x2 * w[i] + l1 * T((w[i] > 0) - (w[i] < 0));
    });
  }
  const GradientConfig& gc = grad_cfg_;
  if (gc.clipnorm > 0 || gc.global_clipnorm > 0) {
    // Norms in double, in a fixed order (the same on every thread count and rank).
    auto sumsq = [&](int64_t b, int64_t e) {
      double q = 0.0;
      for (int64_t i = b; i < e; ++i) q += double(G[i]) * double(G[i]);
      return q;
    };
    auto scale = [&](int64_t b, int64_t e, double f) {
      if (f == 1.0) return;
      for (int64_t i = b; i < e; ++i) G[i] = T(double(G[i]) * f);
    };
    if (gc.clipnorm > 0) {
      for (const auto& l : layers_) {
        if (!l->train_params()) continue;
        for (const ParamInfo& p : l->params) {
          const double nrm = std::sqrt(sumsq(p.offset, p.offset + p.size));
          scale(p.offset, p.offset + p.size, gc.clipnorm / std::max(nrm, gc.clipnorm));
        }
      }
    } else {
      double q = 0.0;
      for (const auto& sg : segments_) q += sumsq(sg.first, sg.second);
      const double f = gc.global_clipnorm / std::max(std::sqrt(q), gc.global_clipnorm);
      for (const auto& sg : segments_) scale(sg.first, sg.second, f);
    }
  } else if (gc.clipvalue > 0) {
    const T v = T(gc.clipvalue);
    for (const auto& sg : segments_)
      for (int64_t i = sg.first; i < sg.second; ++i) G[i] = std::min(v, std::max(-v, G[i]));
  }
}

template class Network<float>;
template class Network<double>;

}  // namespace cnnbp
