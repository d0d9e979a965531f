#include <torch/torch.h>

#include "estimators/feature_network.h"

#include <torch/script.h>

#include <memory>

#include "common/text.h"
#include "data/error.h"
#include "data/files.h"
#include "data/sha256.h"

namespace vae_ebm {

FeatureNetwork load_classifier_features(const std::string& path) {
  auto classifier = load_classifier(path);
  FeatureNetwork net;
  net.kind = "vae-ebm classifier";
  net.path = path;
  net.sha256 = classifier->weights_sha256();
  net.features = [classifier](const torch::Tensor& x) mutable { return classifier->features(x); };
  net.classifier = classifier;
  net.image_shape = classifier->options().image_shape();
  return net;
}

FeatureNetwork load_torchscript_features(const std::string& path, const std::vector<int64_t>& image_shape,
                                         int64_t batch) {
  auto bytes = read_file(path);
  auto module = std::make_shared<torch::jit::script::Module>();
  try {
    std::istringstream in(bytes);
    *module = torch::jit::load(in, torch::kCPU);
  } catch (const std::exception& e) {
    throw DataError("feature network " + path + " is not a TorchScript module: " + first_line(e.what()));
  }
  module->eval();
  FeatureNetwork net;
  net.kind = "torchscript";
  net.path = path;
  net.sha256 = sha256_hex(bytes);
  net.image_shape = image_shape;
  net.features = [module, image_shape, batch, path](const torch::Tensor& x) {
    torch::NoGradGuard no_grad;
    std::vector<int64_t> shape{-1};
    shape.insert(shape.end(), image_shape.begin(), image_shape.end());
    std::vector<torch::Tensor> parts;
    for (int64_t start = 0; start < x.size(0); start += batch) {
      auto chunk = x.slice(0, start, std::min(x.size(0), start + batch)).to(torch::kCPU).reshape(shape);
      torch::Tensor out;
      try {
        out = module->forward({chunk}).toTensor();
      } catch (const std::exception& e) {
        throw DataError("feature network " + path + " failed on a batch of shape " + c10::str(chunk.sizes()) + ": " +
                        first_line(e.what()));
      }
      parts.push_back(out.reshape({out.size(0), -1}).to(torch::kFloat));
    }
    return torch::cat(parts);
  };
  return net;
}

}  // namespace vae_ebm
