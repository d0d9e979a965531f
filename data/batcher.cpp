// In-memory mini-batches with a seeded shuffle (see batcher.h).
#include <torch/torch.h>

#include "data/batcher.h"

#include <algorithm>

#include "data/error.h"
#include "data/seed.h"

namespace vae_ebm {
namespace {

// Keeps the Bernoulli stream of dynamic binarisation apart from the shuffle stream.
constexpr uint64_t kBinarisationStream = 0xb1a7153d0c0ffee5ULL;

}  // namespace

Batcher::Batcher(torch::Tensor data, BatcherOptions options)
    : data_(std::move(data)), options_(options) {
  if (!data_.defined() || data_.dim() != 2) {
    throw DataError("Batcher: expected data of shape [N, D], got " +
                    (data_.defined() ? std::to_string(data_.dim()) + "-d tensor"
                                     : std::string("an undefined tensor")));
  }
  const int64_t n = data_.size(0);
  if (n < 1) throw DataError("Batcher: the data set is empty");
  if (options_.batch_size() < 1) {
    throw DataError("Batcher: batch_size must be at least 1, got " +
                    std::to_string(options_.batch_size()));
  }
  if (options_.drop_last() && options_.batch_size() > n) {
    throw DataError("Batcher: batch_size " + std::to_string(options_.batch_size()) +
                    " is larger than the data set (" + std::to_string(n) +
                    " examples), so drop_last would leave no batch");
  }
  if (options_.dynamic_binarisation() && !data_.is_floating_point()) {
    throw DataError("Batcher: dynamic_binarisation needs floating-point data in [0, 1]");
  }
}

int64_t Batcher::batches_per_epoch() const {
  const int64_t n = data_.size(0);
  const int64_t b = options_.batch_size();
  return options_.drop_last() ? n / b : (n + b - 1) / b;
}

void Batcher::check_index(int64_t epoch, int64_t index) const {
  if (epoch < 0) throw DataError("Batcher: negative epoch " + std::to_string(epoch));
  if (index < 0 || index >= batches_per_epoch()) {
    throw DataError("Batcher: batch index " + std::to_string(index) + " out of range [0, " +
                    std::to_string(batches_per_epoch()) + ")");
  }
}

const torch::Tensor& Batcher::permutation(int64_t epoch) {
  if (!permutation_.defined() || cached_epoch_ != epoch) {
    const int64_t n = data_.size(0);
    torch::Tensor perm;
    if (options_.shuffle()) {
      at::Generator generator =
          make_generator(mix_seed(options_.seed(), static_cast<uint64_t>(epoch)));
      perm = torch::randperm(n, generator, torch::TensorOptions().dtype(torch::kLong));
    } else {
      perm = torch::arange(n, torch::TensorOptions().dtype(torch::kLong));
    }
    permutation_ = perm.to(data_.device());
    cached_epoch_ = epoch;
  }
  return permutation_;
}

torch::Tensor Batcher::batch(int64_t epoch, int64_t index) {
  check_index(epoch, index);
  const int64_t n = data_.size(0);
  const int64_t start = index * options_.batch_size();
  const int64_t end = std::min(n, start + options_.batch_size());
  torch::Tensor batch = data_.index_select(0, permutation(epoch).slice(0, start, end));
  if (options_.dynamic_binarisation()) {
    // Drawn on the CPU so that the bits do not depend on the device.
    at::Generator generator =
        make_generator(mix_seed(options_.seed() ^ kBinarisationStream,
                                static_cast<uint64_t>(epoch), static_cast<uint64_t>(index)));
    batch = torch::bernoulli(batch.to(torch::kCPU).clamp(0.0, 1.0), generator).to(data_.device());
  }
  return batch;
}

torch::Tensor Batcher::rows(int64_t epoch, int64_t index, int64_t begin, int64_t count) {
  if (options_.dynamic_binarisation()) return batch(epoch, index).narrow(0, begin, count);
  check_index(epoch, index);
  const int64_t start = index * options_.batch_size();
  const int64_t size = std::min(data_.size(0), start + options_.batch_size()) - start;
  if (begin < 0 || count < 0 || begin + count > size)
    throw DataError("Batcher: rows [" + std::to_string(begin) + ", " + std::to_string(begin + count) +
                    ") of a batch of " + std::to_string(size));
  return data_.index_select(0, permutation(epoch).slice(0, start + begin, start + begin + count));
}

}  // namespace vae_ebm
