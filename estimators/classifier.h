#pragma once
// The feature network of the sample-quality scores (MATH.md section 6): a small
// convolutional classifier for images C x H x W (the MNIST one for 1x28x28, a shape-generic
// one for the rest), trained deterministically. Its penultimate layer gives the features; its
// weights' SHA-256 labels every score.
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/distributed.h"
#include "estimators/estimate.h"

namespace vae_ebm {

struct ClassifierOptions {
  TORCH_ARG(std::vector<int64_t>, image_shape) = std::vector<int64_t>{1, 28, 28};  // {C, H, W}
  TORCH_ARG(int64_t, num_classes) = 10;
  TORCH_ARG(int64_t, conv1_channels) = 32;
  TORCH_ARG(int64_t, conv2_channels) = 64;
  TORCH_ARG(int64_t, feature_dim) = 128;
  TORCH_ARG(double, conv_dropout) = 0.0;     // on the pooled conv maps, in forward_train only
  TORCH_ARG(double, feature_dropout) = 0.5;  // on the features, in forward_train only

 public:
  void validate() const;  // throws std::invalid_argument naming the bad value
  int64_t stages() const;                   // conv stages (the reference: 2)
  std::vector<int64_t> final_side() const;  // {h, w} of the last stage's maps (the reference: 4x4)
  bool reference() const;                   // image_shape 1x28x28: the MNIST network
  int64_t pixels() const;                   // C H W
};

// Each stage: Conv -> ReLU -> MaxPool 2, then [dropout] -> flatten -> Linear(., feature_dim)
// -> ReLU [= features] -> [dropout] -> Linear(feature_dim, classes).
//   1x28x28 (the MNIST network, unchanged): Conv(1, c1, k5) and Conv(c1, c2, k5), no padding:
//     28 -> 24 -> 12 -> 8 -> 4, flatten c2 * 4 * 4.
//   other C x H x W: Conv(C, c1, k3, pad 1), then Conv(c1 or c2, c2, k3, pad 1), one stage
//     more while the smaller side is at least 8 (at least one stage): 32x32 -> 16 -> 8 -> 4 in
//     3 stages, 20x24 -> 10x12 -> 5x6 in 2; flatten c2 (or c1) * h * w.
// Images are [N, C H W] (or [N, C, H, W]) with values in [0, 1].
class FeatureClassifierImpl : public torch::nn::Module {
 public:
  explicit FeatureClassifierImpl(const ClassifierOptions& options = {});
  void reset();

  // Logits [N, classes], no dropout (the evaluation network), with gradient.
  torch::Tensor forward(const torch::Tensor& images);
  // Training logits: both dropouts, with masks drawn from `generator`. With `shard`, the images
  // are the shard's rows of a batch of shard->global: the masks are drawn for the whole batch
  // and the shard's rows kept (the numbers one process would use for these rows).
  torch::Tensor forward_train(const torch::Tensor& images, at::Generator& generator,
                              const BatchShard* shard = nullptr);
  // Penultimate features (after the ReLU): [N, feature_dim] float32 on the CPU, computed
  // without gradient in batches of `batch` images.
  torch::Tensor features(const torch::Tensor& images, int64_t batch = 1000);
  // Class probabilities [N, classes] float64 and predicted labels [N] int64 (argmax).
  torch::Tensor probabilities(const torch::Tensor& images, int64_t batch = 1000);
  torch::Tensor predict(const torch::Tensor& images, int64_t batch = 1000);

  // SHA-256 over every parameter in named_parameters() order: for each, its name, '\0', its
  // shape as decimal sizes joined by ',', '\0', then its float32 values as raw little-endian
  // bytes. Independent of the file format; two networks score alike iff these agree.
  std::string weights_sha256() const;
  const ClassifierOptions& options() const { return options_; }

  std::vector<torch::nn::Conv2d> convs;  // the stages' convolutions, registered as conv1, conv2, ...
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};

 private:
  // -> features, with gradient; dropout on the conv maps iff `generator` is given.
  torch::Tensor trunk(const torch::Tensor& images, at::Generator* generator = nullptr,
                      const BatchShard* shard = nullptr);
  ClassifierOptions options_;
};
TORCH_MODULE(FeatureClassifier);

struct ClassifierEpoch {
  int64_t epoch = 0;          // 1-based
  double loss = 0;            // mean training cross-entropy over the epoch
  double train_accuracy = 0;  // on the training batches as seen (with dropout)
  double seconds = 0;         // wall time of the epoch
};

struct ClassifierTrainOptions {
  TORCH_ARG(ClassifierOptions, network) = ClassifierOptions();
  TORCH_ARG(int64_t, epochs) = 10;
  TORCH_ARG(int64_t, batch_size) = 128;
  TORCH_ARG(double, lr) = 1e-3;        // Adam
  TORCH_ARG(double, lr_decay) = 0.9;   // the learning rate is multiplied by this after each epoch
  TORCH_ARG(bool, binarize) = false;   // draw each training batch as Bernoulli(images): given the
                                       // grey source of a binary data set, a fresh binarisation
                                       // every epoch (a no-op on images that are already 0/1)
  TORCH_ARG(int64_t, max_shift) = 1;   // augmentation: each training image is translated by
                                       // (dx, dy), uniform in [-max_shift, max_shift]^2, zero fill
  TORCH_ARG(uint64_t, seed) = 0;       // initialisation (torch::manual_seed just before
                                       // construction), shuffling, shift and dropout generators
  TORCH_ARG(std::function<void(const ClassifierEpoch&)>, on_epoch) = nullptr;  // progress
  // Data-parallel training over these processes (each started with the same options and data):
  // batch_size is the global batch; each process takes its rows of every batch (BatchShard),
  // draws the random numbers for the whole batch, and the gradients are summed over the
  // processes (one bucketed all-reduce a step) before every process takes the same Adam step.
  // on_epoch's loss and accuracy are over all the processes' rows. Null or one process: alone.
  TORCH_ARG(std::shared_ptr<Distributed>, distributed) = nullptr;

 public:
  void validate() const;  // throws std::invalid_argument naming the bad value
};

// Trains on images [N, C H W] float in [0, 1] (or [N, C, H, W]; the shape is the network
// options' image_shape) with labels [N] int64 in
// [0, classes). Deterministic for a given seed and thread count: shuffling and dropout use
// generators from make_generator; the only global-RNG use is the initialisation, right after
// torch::manual_seed(seed). CPU only.
FeatureClassifier train_classifier(const torch::Tensor& images, const torch::Tensor& labels,
                                   const ClassifierTrainOptions& options);

// Fraction of correct predictions, with its binomial standard error (mean_estimate over
// the 0/1 indicators); units "fraction".
Estimate classifier_accuracy(FeatureClassifier& model, const torch::Tensor& images, const torch::Tensor& labels);

// exp(E_x[KL(p(y|x) || p(y))]), p(y) the mean of p(y|x) over the rows (the Inception-score
// formula) from probabilities [N, C]. std_error by the delta method from the per-row KL (p(y)
// held fixed); count N; units "".
Estimate classifier_score(const torch::Tensor& probabilities);
Estimate classifier_score(FeatureClassifier& model, const torch::Tensor& images);

// Counts of each label in [0, num_classes): [num_classes] int64. A label outside throws.
torch::Tensor label_histogram(const torch::Tensor& labels, int64_t num_classes);

// Writes the network (its options with the image shape it takes, its parameters and their
// weights_sha256) atomically to `path` (format 2; format 1, written before the image shape
// was recorded, is read as 1x28x28). load_classifier rebuilds it; a missing, truncated or
// foreign file, or one whose parameters do not match the recorded hash, throws DataError
// naming the file.
void save_classifier(FeatureClassifier& model, const std::string& path);
FeatureClassifier load_classifier(const std::string& path);

}  // namespace vae_ebm
