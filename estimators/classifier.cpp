#include <torch/torch.h>

#include "estimators/classifier.h"

#include <chrono>
#include <cmath>
#include <sstream>
#include <stdexcept>

#include "common/text.h"
#include "data/archive.h"
#include "data/error.h"
#include "data/files.h"
#include "data/seed.h"
#include "data/sha256.h"

namespace vae_ebm {
namespace {

constexpr int64_t kFileFormat = 2;       // with the image shape
constexpr int64_t kShapelessFormat = 1;  // before it: 1x28x28

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string out;
  for (auto s : shape) out += (out.empty() ? "" : "x") + std::to_string(s);
  return out;
}

// images [N, C H W] or [N, C, H, W] (single-channel: also [N, H, W]) of the network's shape
// -> [N, C, H, W] float.
torch::Tensor as_images(const torch::Tensor& images, const ClassifierOptions& o, const char* what) {
  const auto& shape = o.image_shape();
  const int64_t p = o.pixels();
  bool ok = false;
  if (images.defined() && images.dim() >= 2) {
    const auto each = images.sizes().slice(1);
    ok = (images.dim() == 2 && each[0] == p) || each == torch::IntArrayRef(shape) ||
         (shape[0] == 1 && each == torch::IntArrayRef(shape).slice(1));
  }
  TORCH_CHECK(ok, what, ": this classifier takes images of shape ", shape_text(shape), ", as [N, ", p, "] or [N, ",
              shape[0], ", ", shape[1], ", ", shape[2], "]; got ", images.defined() ? images.sizes() : torch::IntArrayRef{});
  return images.reshape({-1, shape[0], shape[1], shape[2]}).to(torch::kFloat);
}

// Translates each image [B, C, H, W] by its own (dx, dy) in [-m, m]^2, filling with zeros.
torch::Tensor random_shift(const torch::Tensor& x, int64_t m, at::Generator& generator) {
  if (m == 0) return x;
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  auto padded = torch::constant_pad_nd(x, {m, m, m, m}, 0);  // [B, C, H + 2m, W + 2m]
  auto long_options = torch::TensorOptions().dtype(torch::kLong);
  auto dy = torch::randint(0, 2 * m + 1, {b}, generator, long_options);
  auto dx = torch::randint(0, 2 * m + 1, {b}, generator, long_options);
  auto rows = (dy.unsqueeze(1) + torch::arange(h, long_options)).view({b, 1, h, 1});
  auto cols = (dx.unsqueeze(1) + torch::arange(w, long_options)).view({b, 1, 1, w});
  auto batch = torch::arange(b, long_options).view({b, 1, 1, 1});
  auto channel = torch::arange(c, long_options).view({1, c, 1, 1});
  return padded.index({batch, channel, rows, cols});
}

}  // namespace

void ClassifierOptions::validate() const {
  if (image_shape_.size() != 3)
    throw std::invalid_argument("classifier images must be {C, H, W}, got " + std::to_string(image_shape_.size()) +
                                " dimensions");
  if (image_shape_[0] < 1 || image_shape_[1] < 4 || image_shape_[2] < 4)
    throw std::invalid_argument("classifier images need a channel and sides of at least 4 (one conv stage and "
                                "its pooling), got " + shape_text(image_shape_));
  if (num_classes_ < 2) throw std::invalid_argument("classifier classes must be >= 2, got " + std::to_string(num_classes_));
  if (conv1_channels_ < 1 || conv2_channels_ < 1)
    throw std::invalid_argument("classifier channels must be >= 1, got " + std::to_string(conv1_channels_) + ", " +
                                std::to_string(conv2_channels_));
  if (feature_dim_ < 1) throw std::invalid_argument("classifier feature dim must be >= 1, got " + std::to_string(feature_dim_));
  if (!(conv_dropout_ >= 0 && conv_dropout_ < 1))
    throw std::invalid_argument("classifier conv dropout must be in [0, 1), got " + std::to_string(conv_dropout_));
  if (!(feature_dropout_ >= 0 && feature_dropout_ < 1))
    throw std::invalid_argument("classifier feature dropout must be in [0, 1), got " + std::to_string(feature_dropout_));
}

bool ClassifierOptions::reference() const { return image_shape_ == std::vector<int64_t>{1, 28, 28}; }

int64_t ClassifierOptions::pixels() const {
  int64_t p = 1;
  for (auto s : image_shape_) p *= s;
  return p;
}

int64_t ClassifierOptions::stages() const {
  if (reference()) return 2;
  int64_t stages = 1;
  for (int64_t side = std::min(image_shape_[1], image_shape_[2]) / 2; side >= 8; side /= 2) ++stages;
  return stages;
}

std::vector<int64_t> ClassifierOptions::final_side() const {
  if (reference()) return {4, 4};  // 28 -> conv5 24 -> pool 12 -> conv5 8 -> pool 4
  std::vector<int64_t> side{image_shape_[1], image_shape_[2]};
  for (int64_t i = 0; i < stages(); ++i) side = {side[0] / 2, side[1] / 2};  // padded conv, then pool 2
  return side;
}

FeatureClassifierImpl::FeatureClassifierImpl(const ClassifierOptions& options) : options_(options) {
  options_.validate();
  reset();
}

void FeatureClassifierImpl::reset() {
  const auto& o = options_;
  // The reference: k5 without padding; the generic network: k3, padding 1 (the side is kept).
  const int64_t kernel = o.reference() ? 5 : 3, padding = o.reference() ? 0 : 1;
  convs.clear();
  int64_t channels = o.image_shape()[0];
  for (int64_t i = 0; i < o.stages(); ++i) {
    const int64_t out = i == 0 ? o.conv1_channels() : o.conv2_channels();
    convs.push_back(register_module("conv" + std::to_string(i + 1),
                                    torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, out, kernel).padding(padding))));
    channels = out;
  }
  const auto side = o.final_side();
  fc1 = register_module("fc1", torch::nn::Linear(channels * side[0] * side[1], o.feature_dim()));
  fc2 = register_module("fc2", torch::nn::Linear(o.feature_dim(), o.num_classes()));
}

namespace {

// Inverted dropout with our own generator (torch::dropout would draw from the global one). With
// a shard, h holds the shard's rows of the batch: the uniforms are drawn for the whole batch.
torch::Tensor dropout(const torch::Tensor& h, double p, at::Generator& generator, const BatchShard* shard) {
  if (p <= 0) return h;
  auto sizes = h.sizes().vec();
  if (shard) sizes[0] = shard->global;
  auto u = torch::rand(sizes, generator, h.options());
  auto keep = (shard ? shard->rows(u, 0) : u) >= p;
  return h * keep.to(h.dtype()) / (1.0 - p);
}

}  // namespace

torch::Tensor FeatureClassifierImpl::trunk(const torch::Tensor& images, at::Generator* generator,
                                          const BatchShard* shard) {
  auto x = as_images(images, options_, "FeatureClassifier").to(fc1->weight.device());
  for (auto& conv : convs) x = torch::max_pool2d(torch::relu(conv->forward(x)), 2);
  if (generator != nullptr) x = dropout(x, options_.conv_dropout(), *generator, shard);
  return torch::relu(fc1->forward(x.flatten(1)));
}

torch::Tensor FeatureClassifierImpl::forward(const torch::Tensor& images) { return fc2->forward(trunk(images)); }

torch::Tensor FeatureClassifierImpl::forward_train(const torch::Tensor& images, at::Generator& generator,
                                                  const BatchShard* shard) {
  auto h = trunk(images, &generator, shard);
  return fc2->forward(dropout(h, options_.feature_dropout(), generator, shard));
}

torch::Tensor FeatureClassifierImpl::features(const torch::Tensor& images, int64_t batch) {
  TORCH_CHECK(batch > 0, "feature batch must be > 0, got ", batch);
  torch::NoGradGuard no_grad;
  auto x = as_images(images, options_, "FeatureClassifier::features");
  std::vector<torch::Tensor> parts;
  for (int64_t start = 0; start < x.size(0); start += batch)
    parts.push_back(trunk(x.slice(0, start, std::min(x.size(0), start + batch))).to(torch::kCPU));
  if (parts.empty()) return torch::zeros({0, options_.feature_dim()});
  return torch::cat(parts);
}

torch::Tensor FeatureClassifierImpl::probabilities(const torch::Tensor& images, int64_t batch) {
  TORCH_CHECK(batch > 0, "probability batch must be > 0, got ", batch);
  torch::NoGradGuard no_grad;
  auto x = as_images(images, options_, "FeatureClassifier::probabilities");
  std::vector<torch::Tensor> parts;
  for (int64_t start = 0; start < x.size(0); start += batch) {
    auto logits = forward(x.slice(0, start, std::min(x.size(0), start + batch)));
    parts.push_back(torch::softmax(logits.to(torch::kCPU, torch::kDouble), 1));
  }
  if (parts.empty()) return torch::zeros({0, options_.num_classes()}, torch::kDouble);
  return torch::cat(parts);
}

torch::Tensor FeatureClassifierImpl::predict(const torch::Tensor& images, int64_t batch) {
  return probabilities(images, batch).argmax(1);
}

std::string FeatureClassifierImpl::weights_sha256() const {
  Sha256 hash;
  for (const auto& item : named_parameters()) {
    auto t = item.value().detach().to(torch::kCPU, torch::kFloat).contiguous();
    std::string header = item.key();
    header.push_back('\0');
    for (int64_t i = 0; i < t.dim(); ++i) header += (i ? "," : "") + std::to_string(t.size(i));
    header.push_back('\0');
    hash.update(header);
    // Raw float32 bytes; every platform LibTorch supports is little-endian.
    hash.update(t.data_ptr<float>(), static_cast<size_t>(t.numel()) * sizeof(float));
  }
  return hash.hex_digest();
}

void ClassifierTrainOptions::validate() const {
  network_.validate();
  if (epochs_ < 0) throw std::invalid_argument("classifier epochs must be >= 0, got " + std::to_string(epochs_));
  if (batch_size_ < 1) throw std::invalid_argument("classifier batch size must be >= 1, got " + std::to_string(batch_size_));
  if (!(lr_ > 0)) throw std::invalid_argument("classifier learning rate must be > 0, got " + std::to_string(lr_));
  if (!(lr_decay_ > 0 && lr_decay_ <= 1))
    throw std::invalid_argument("classifier learning-rate decay must be in (0, 1], got " + std::to_string(lr_decay_));
  if (max_shift_ < 0 || max_shift_ > 8)
    throw std::invalid_argument("classifier max shift must be in [0, 8], got " + std::to_string(max_shift_));
}

FeatureClassifier train_classifier(const torch::Tensor& images, const torch::Tensor& labels,
                                   const ClassifierTrainOptions& options) {
  options.validate();
  auto x = as_images(images, options.network(), "train_classifier").to(torch::kCPU).contiguous();
  TORCH_CHECK(labels.defined() && labels.dim() == 1 && labels.size(0) == x.size(0),
              "train_classifier: labels must be [", x.size(0), "], got ", labels.defined() ? labels.sizes() : torch::IntArrayRef{});
  auto y = labels.to(torch::kCPU, torch::kLong);
  const int64_t classes = options.network().num_classes();
  if (y.numel() > 0) {
    const auto lo = y.min().item<int64_t>(), hi = y.max().item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi < classes, "train_classifier: labels must lie in [0, ", classes, "), found [", lo, ", ", hi, "]");
  }
  // The only global-RNG use: the default initialisation of the layers, seeded here.
  torch::manual_seed(options.seed());
  FeatureClassifier model(options.network());
  auto shuffle_gen = make_generator(mix_seed(options.seed(), 0x73687566ULL));  // "shuf"
  auto dropout_gen = make_generator(mix_seed(options.seed(), 0x64726f70ULL));  // "drop"
  auto shift_gen = make_generator(mix_seed(options.seed(), 0x73686674ULL));    // "shft": shifts, binarisation
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(options.lr()));
  Distributed* dist = options.distributed() && options.distributed()->parallel() ? options.distributed().get() : nullptr;
  // The same seed gives every process the same initial network; checked, as the data are.
  if (dist) dist->check_identical({x, y}, "training images and labels of the classifier");
  if (dist) dist->check_identical(model->parameters(), "classifier's initial parameters");
  const int64_t n = x.size(0);
  double lr = options.lr();
  for (int64_t epoch = 1; epoch <= options.epochs(); ++epoch) {
    const auto start = std::chrono::steady_clock::now();
    auto order = torch::randperm(n, shuffle_gen, torch::TensorOptions().dtype(torch::kLong));
    double loss_sum = 0;
    int64_t correct = 0;
    for (int64_t b = 0; b < n; b += options.batch_size()) {
      auto idx = order.slice(0, b, std::min(n, b + options.batch_size()));
      const int64_t rows = idx.size(0);
      // The random numbers are the whole batch's (one process's), each process keeps its rows.
      const auto shard = BatchShard::of(rows, dist ? dist->rank() : 0, dist ? dist->world_size() : 1);
      auto xb = x.index_select(0, idx);
      if (options.binarize()) xb = torch::bernoulli(xb, shift_gen);
      xb = shard.rows(random_shift(xb, options.max_shift(), shift_gen), 0);
      auto yb = shard.rows(y.index_select(0, idx), 0);
      auto logits = model->forward_train(xb, dropout_gen, &shard);
      // Alone: the batch's mean. Data-parallel: this process's part of it (its rows' sum over the
      // global batch size), whose gradients summed over the processes are the mean's.
      auto loss = dist ? torch::nn::functional::cross_entropy(
                             logits, yb, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum)) /
                             static_cast<double>(rows)
                       : torch::nn::functional::cross_entropy(logits, yb);
      optimizer.zero_grad();
      loss.backward();
      if (dist) {
        std::vector<torch::Tensor> grads;
        for (auto& p : model->parameters()) {
          if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);  // a process without rows
          grads.push_back(p.grad());
        }
        dist->all_reduce_sum(grads, "the classifier's gradient all-reduce");
      }
      optimizer.step();
      loss_sum += loss.item<double>() * static_cast<double>(rows);
      correct += (logits.argmax(1) == yb).sum().item<int64_t>();
    }
    if (dist) {
      auto totals = torch::tensor({loss_sum, static_cast<double>(correct)}, torch::kDouble);
      dist->all_reduce_sum({totals}, "the all-reduce of the classifier's epoch loss");
      loss_sum = totals[0].item<double>();
      correct = static_cast<int64_t>(totals[1].item<double>());
    }
    lr *= options.lr_decay();
    for (auto& group : optimizer.param_groups())
      static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
    if (options.on_epoch()) {
      ClassifierEpoch e;
      e.epoch = epoch;
      e.loss = n > 0 ? loss_sum / static_cast<double>(n) : 0.0;
      e.train_accuracy = n > 0 ? static_cast<double>(correct) / static_cast<double>(n) : 0.0;
      e.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      options.on_epoch()(e);
    }
  }
  if (dist) dist->check_identical(model->parameters(), "classifier's parameters after training");
  return model;
}

Estimate classifier_accuracy(FeatureClassifier& model, const torch::Tensor& images, const torch::Tensor& labels) {
  auto predicted = model->predict(images);
  TORCH_CHECK(labels.defined() && labels.dim() == 1 && labels.size(0) == predicted.size(0),
              "classifier_accuracy: labels must be [", predicted.size(0), "], got ",
              labels.defined() ? labels.sizes() : torch::IntArrayRef{});
  auto e = mean_estimate((predicted == labels.to(torch::kCPU, torch::kLong)).to(torch::kDouble), "accuracy");
  e.units = "fraction";
  return e;
}

Estimate classifier_score(const torch::Tensor& probabilities) {
  TORCH_CHECK(probabilities.defined() && probabilities.dim() == 2 && probabilities.size(0) > 0,
              "classifier_score: probabilities must be [N, C] with N > 0, got ",
              probabilities.defined() ? probabilities.sizes() : torch::IntArrayRef{});
  auto p = probabilities.detach().to(torch::kCPU, torch::kDouble);
  TORCH_CHECK((p >= 0).all().item<bool>() && torch::allclose(p.sum(1), torch::ones({p.size(0)}, torch::kDouble), 0, 1e-6),
              "classifier_score: rows must be probability vectors (non-negative, summing to 1)");
  auto marginal = p.mean(0, /*keepdim=*/true);
  // KL(p(y|x) || p(y)) per row, with 0 log 0 = 0.
  auto kl = (torch::xlogy(p, p) - torch::xlogy(p, marginal)).sum(1);
  auto e = mean_estimate(kl, "classifier score");
  const double score = std::exp(e.value);
  e.std_error *= score;  // delta method for exp(mean KL)
  e.value = score;
  e.units = "";
  return e;
}

Estimate classifier_score(FeatureClassifier& model, const torch::Tensor& images) {
  return classifier_score(model->probabilities(images));
}

torch::Tensor label_histogram(const torch::Tensor& labels, int64_t num_classes) {
  TORCH_CHECK(num_classes > 0, "label_histogram: num_classes must be > 0, got ", num_classes);
  TORCH_CHECK(labels.defined() && labels.dim() == 1, "label_histogram: labels must be [N], got ",
              labels.defined() ? labels.sizes() : torch::IntArrayRef{});
  auto y = labels.to(torch::kCPU, torch::kLong);
  if (y.numel() == 0) return torch::zeros({num_classes}, torch::kLong);
  const auto lo = y.min().item<int64_t>(), hi = y.max().item<int64_t>();
  TORCH_CHECK(lo >= 0 && hi < num_classes, "label_histogram: labels must lie in [0, ", num_classes, "), found [", lo,
              ", ", hi, "]");
  return torch::bincount(y, /*weights=*/{}, num_classes);
}

void save_classifier(FeatureClassifier& model, const std::string& path) {
  const auto& o = model->options();
  torch::serialize::OutputArchive archive, network;
  archive.write("format", torch::tensor(kFileFormat));
  archive.write("image_shape", torch::tensor(o.image_shape()));
  archive.write("options", torch::tensor({o.num_classes(), o.conv1_channels(), o.conv2_channels(), o.feature_dim()}));
  archive.write("dropout", torch::tensor({o.conv_dropout(), o.feature_dropout()}, torch::kDouble));
  archive.write("weights_sha256", c10::IValue(model->weights_sha256()));
  model->save(network);
  archive.write("network", network);
  atomic_write(path, sealed_archive_bytes(archive));
}

FeatureClassifier load_classifier(const std::string& path) {
  auto bytes = read_file(path);
  try {
    ArchiveReader reader(bytes, torch::kCPU, "feature classifier " + path);
    const auto format = reader.tensor("format").item<int64_t>();
    if (format != kFileFormat && format != kShapelessFormat)
      throw DataError("feature classifier " + path + " has format " + std::to_string(format) + ", expected " +
                      std::to_string(kShapelessFormat) + " or " + std::to_string(kFileFormat));
    auto& archive = reader.archive();
    auto read = [&reader](const char* key) { return reader.tensor(key); };
    ClassifierOptions o;
    if (format == kFileFormat) {
      auto shape = read("image_shape").to(torch::kLong);
      if (shape.numel() != 3) throw DataError("feature classifier " + path + ": malformed image shape record");
      o.image_shape({shape[0].item<int64_t>(), shape[1].item<int64_t>(), shape[2].item<int64_t>()});
    }
    auto sizes = read("options");
    if (sizes.numel() != 4) throw DataError("feature classifier " + path + ": malformed options record");
    auto s = sizes.to(torch::kLong);
    o.num_classes(s[0].item<int64_t>()).conv1_channels(s[1].item<int64_t>()).conv2_channels(s[2].item<int64_t>());
    auto dropout = read("dropout").to(torch::kDouble);
    if (dropout.numel() != 2) throw DataError("feature classifier " + path + ": malformed dropout record");
    o.feature_dim(s[3].item<int64_t>()).conv_dropout(dropout[0].item<double>()).feature_dropout(dropout[1].item<double>());
    c10::IValue recorded;
    archive.read("weights_sha256", recorded);
    FeatureClassifier model(o);
    torch::serialize::InputArchive network;
    archive.read("network", network);
    model->load(network);
    const auto actual = model->weights_sha256();
    if (!recorded.isString() || recorded.toStringRef() != actual)
      throw DataError("feature classifier " + path + ": parameters do not match the recorded SHA-256 (" +
                      (recorded.isString() ? recorded.toStringRef() : std::string("none")) + " recorded, " + actual +
                      " found)");
    return model;
  } catch (const DataError&) {
    throw;
  } catch (const std::exception& e) {
    throw DataError("feature classifier " + path + " is truncated, corrupt or not a feature classifier: " +
                    first_line(e.what()));
  }
}

}  // namespace vae_ebm
