// Issue 5's check of the sample-quality scores: the Fréchet distance and KID of corrupted
// test images against the clean training images must grow steadily with the corruption,
// and the clean test set against the training set must score near zero.
//   bench_corruption [--classifier PATH] [--images N] [--data-dir DIR]
#include <torch/torch.h>

#include <cstdio>
#include <string>

#include "apps/cli.h"
#include "bench/bench_common.h"
#include "data/dataset.h"
#include "data/seed.h"
#include "estimators/classifier.h"
#include "estimators/quality.h"

using namespace vae_ebm;

namespace {

// Flips each pixel with probability p.
torch::Tensor flip_noise(const torch::Tensor& x, double p, at::Generator& gen) {
  auto flip = torch::bernoulli(torch::full_like(x, p), gen);
  return (x - flip).abs();
}

// A box blur of width 2r+1 followed by re-binarisation at 0.5.
torch::Tensor blur(const torch::Tensor& x, int64_t r) {
  if (r == 0) return x;
  auto img = x.reshape({-1, 1, 28, 28});
  auto kernel = torch::full({1, 1, 2 * r + 1, 2 * r + 1}, 1.0 / ((2 * r + 1) * (2 * r + 1)));
  auto out = torch::conv2d(img, kernel, {}, 1, r);
  return (out > 0.5).to(torch::kFloat).reshape({-1, 784});
}

// Zeroes a random s x s block in each image.
torch::Tensor missing_block(const torch::Tensor& x, int64_t s, at::Generator& gen) {
  if (s == 0) return x;
  auto img = x.reshape({-1, 28, 28}).clone();
  auto corner = torch::randint(0, 28 - s + 1, {img.size(0), 2}, gen);
  auto acc = corner.accessor<int64_t, 2>();
  for (int64_t i = 0; i < img.size(0); ++i) img[i].narrow(0, acc[i][0], s).narrow(1, acc[i][1], s).zero_();
  return img.reshape({-1, 784});
}

}  // namespace

int main(int argc, char** argv) {
  std::string data_dir = default_data_dir(), classifier_path;
  int64_t images = 10000;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--classifier") classifier_path = v;
    else if (k == "--images") images = std::stoll(v);
    else if (k == "--data-dir") data_dir = v;
    else { std::fprintf(stderr, "bench_corruption: unknown flag %s\n", k.c_str()); return 2; }
  }
  if (classifier_path.empty()) classifier_path = cli::default_classifier_path(data_dir, "binary-mnist");
  bench::use_machine(2, "auto");
  DatasetOptions options;
  options.data_dir = data_dir;
  auto data = load_dataset("binary-mnist", options);
  auto classifier = load_classifier(classifier_path);
  auto train = data.train.images.narrow(0, 0, std::min(images, data.train.size()));
  auto test = data.test.images.narrow(0, 0, std::min(images, data.test.size()));
  auto real = classifier->features(train);
  std::printf("feature network %s (SHA-256 %s), %lld train vs %lld test images\n", classifier_path.c_str(),
              classifier->weights_sha256().c_str(), (long long)train.size(0), (long long)test.size(0));
  std::printf("%-16s %8s %12s %12s\n", "corruption", "level", "FD", "KID");
  auto score = [&](const std::string& name, double level, const torch::Tensor& x) {
    auto gen = make_generator(7);
    auto fake = classifier->features(x);
    auto fd = frechet_distance(real, fake);
    auto k = kid(real, fake, KidOptions(), gen);
    std::printf("%-16s %8g %12.3f %12.4f\n", name.c_str(), level, fd.value, k.mean);
    std::fflush(stdout);
  };
  auto gen = make_generator(3);
  score("none", 0, test);
  for (double p : {0.01, 0.02, 0.05, 0.1, 0.2}) score("flip-noise", p, flip_noise(test, p, gen));
  for (int64_t r : {1, 2, 3}) score("box-blur", static_cast<double>(r), blur(test, r));
  for (int64_t s : {4, 8, 12, 16}) score("missing-block", static_cast<double>(s), missing_block(test, s, gen));
  return 0;
}
