#pragma once
// The network whose features score sample quality: the toolkit's classifier, or a
// user's TorchScript network (for example an Inception network for a conventional FID).
#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "estimators/classifier.h"

namespace vae_ebm {

struct FeatureNetwork {
  std::string kind;    // "vae-ebm classifier" or "torchscript"
  std::string path;
  std::string sha256;  // of the classifier's weights, or of the TorchScript file's bytes
  // images [N, P] float in [0, 1] -> features [N, d] float on the CPU.
  std::function<torch::Tensor(const torch::Tensor&)> features;
  // The classifier itself when kind is "vae-ebm classifier" (for its score and labels); else empty.
  FeatureClassifier classifier{nullptr};
  // The image shape {C, H, W} it takes: the classifier's, or the one given to the TorchScript network.
  std::vector<int64_t> image_shape;
};

// Loads a classifier written by train-classifier. Throws DataError naming the file.
FeatureNetwork load_classifier_features(const std::string& path);

// Loads a TorchScript module whose forward maps images [B, C, H, W] (image_shape, the data
// set's: any channels and sides; values in [0, 1]; flat data {D} as [B, D]) to features
// [B, d] (or [B, d, 1, 1]). Images are passed in batches of `batch`. Throws DataError naming
// the file if it cannot be loaded.
FeatureNetwork load_torchscript_features(const std::string& path, const std::vector<int64_t>& image_shape,
                                         int64_t batch = 500);

}  // namespace vae_ebm
