// vae-ebm train-classifier: the feature network that scores sample quality.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "apps/command.h"
#include "apps/flags.h"
#include "apps/run_support.h"
#include "common/distributed.h"
#include "data/error.h"
#include "estimators/classifier.h"

namespace vae_ebm::cli {

std::string default_classifier_path(const std::string& data_dir, const std::string& dataset) {
  std::string name = dataset;
  std::replace(name.begin(), name.end(), '/', '_');
  std::replace(name.begin(), name.end(), ':', '_');
  return data_dir + "/classifiers/" + name + ".pt";
}

int run_train_classifier(const ClassifierConfig& c) {
  if (c.common.nproc > 1) return run_local_world(c.common.nproc, "train-classifier");
  use_machine(c.common);
  // Many processes when torchrun (or --nproc) started them: data-parallel over the global batch;
  // rank 0 alone measures the accuracy, writes and prints.
  const auto dist = connect_processes(c.dist_timeout, torch::kCPU);
  const bool writes = dist->is_root();
  auto data = load_data(c.dataset, c.common, 0);
  if (!data.train.labels.defined()) throw DataError("data set " + c.dataset + " has no labels to train a classifier on");
  if (data.image_shape.size() != 3)
    throw DataError("train-classifier needs images {C, H, W}; " + c.dataset + " is flat, " +
                    std::to_string(data.dim()) + " values per example");
  auto images = data.train.images, labels = data.train.labels;
  if (c.limit > 0 && c.limit < images.size(0)) {
    images = images.narrow(0, 0, c.limit);
    labels = labels.narrow(0, 0, c.limit);
  }
  // As many classes as the training labels name: 0 .. the largest (at least 2). The test labels
  // must lie among them.
  const auto train_labels = labels.to(torch::kLong);
  if (train_labels.numel() == 0) throw DataError("data set " + c.dataset + " has no training images");
  const int64_t lowest = train_labels.min().item<int64_t>();
  if (lowest < 0) throw DataError("data set " + c.dataset + " has a negative training label (" + std::to_string(lowest) + ")");
  const int64_t classes = std::max<int64_t>(2, train_labels.max().item<int64_t>() + 1);
  if (data.test.labels.defined() && data.test.labels.numel() > 0) {
    const auto test = data.test.labels.to(torch::kLong);
    const int64_t lo = test.min().item<int64_t>(), hi = test.max().item<int64_t>();
    if (lo < 0 || hi >= classes)
      throw DataError("data set " + c.dataset + " has test labels in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                      "], outside the training labels' classes 0.." + std::to_string(classes - 1));
  }
  const auto network = ClassifierOptions().image_shape(data.image_shape).num_classes(classes);
  as_usage([&] { network.validate(); });
  auto out = c.out.empty() ? default_classifier_path(c.common.data_dir, c.dataset) : c.out;
  if (writes)
    std::filesystem::create_directories(std::filesystem::path(out).parent_path().empty()
                                            ? std::filesystem::path(".")
                                            : std::filesystem::path(out).parent_path());
  if (dist->parallel()) {
    // Ranks given other flags would train apart: named here, before the first step.
    const std::string flags = c.dataset + "\n" + std::to_string(c.epochs) + "\n" + std::to_string(c.batch_size) + "\n" +
                              std::to_string(c.limit) + "\n" + std::to_string(c.seed);
    dist->check_identical({torch::tensor(std::vector<int64_t>(flags.begin(), flags.end()))},
                          "train-classifier flags (--dataset, --epochs, --batch-size, --limit, --seed)");
  }
  auto t0 = std::chrono::steady_clock::now();
  auto options = ClassifierTrainOptions().network(network).epochs(c.epochs).batch_size(c.batch_size).seed(c.seed)
                     .distributed(dist);
  if (writes)
    options.on_epoch([](const ClassifierEpoch& e) {
      std::fprintf(stderr, "epoch %lld: training loss %.4f\n", (long long)e.epoch, e.loss);
    });
  auto model = train_classifier(images, labels, options);
  if (!writes) return 0;
  auto accuracy = classifier_accuracy(model, data.test.images, data.test.labels);
  save_classifier(model, out);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("test accuracy %.4f +- %.4f (%lld images, %lld classes); %.0f s%s\nwrote %s\nweights SHA-256 %s\n",
              accuracy.value, accuracy.std_error, (long long)accuracy.count, (long long)classes, seconds,
              dist->parallel() ? ("; data-parallel over " + dist->describe()).c_str() : "", out.c_str(),
              model->weights_sha256().c_str());
  return 0;
}

// The command line: flags, their defaults and their checks.
bool parse_train_classifier(const std::vector<std::string>& args, ClassifierConfig& c) {
  po::options_description d("train-classifier flags");
  d.add_options()
      ("help,h", "show this help")
      ("dataset", po::value(&c.dataset)->default_value(c.dataset),
       "labelled image data set (the MNIST network for 1x28x28, a shape-generic one for other C x H x W)")
      ("out", po::value(&c.out)->default_value(c.out), "where to write it (default DATA_DIR/classifiers/DATASET.pt)")
      ("epochs", po::value(&c.epochs)->default_value(c.epochs), "training epochs")
      ("batch-size", po::value(&c.batch_size)->default_value(c.batch_size),
       "images per step (data-parallel: the global batch, shared out over the processes)")
      ("limit", po::value(&c.limit)->default_value(c.limit), "train on the first N training images only (0: all)")
      ("seed", po::value(&c.seed)->default_value(c.seed), "seed (training is deterministic for a seed and thread count)")
      ("dist-timeout", real(&c.dist_timeout, c.dist_timeout),
       "data-parallel training (torchrun or --nproc): seconds that meeting the other processes, or any one exchange "
       "with them, may take before it stops with an error");
  add_common(d, c.common);
  add_nproc(d, c.common);
  po::positional_options_description none;
  po::variables_map vm;
  if (!parse(args, d, none, vm,
             "usage: vae-ebm train-classifier [--dataset NAME]\n"
             "Trains the small convolutional classifier whose penultimate features score sample quality."))
    return false;
  notify_all(vm);
  if (c.epochs < 1) throw UsageError("--epochs must be >= 1, got " + std::to_string(c.epochs));
  if (c.batch_size < 1) throw UsageError("--batch-size must be >= 1, got " + std::to_string(c.batch_size));
  if (c.limit < 0) throw UsageError("--limit must be >= 0, got " + std::to_string(c.limit));
  return true;
}

Command train_classifier_command() {
  return command_of("train-classifier", "train the feature network that scores sample quality",
                    parse_train_classifier, run_train_classifier);
}

}  // namespace vae_ebm::cli
