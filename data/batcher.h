#pragma once
// In-memory mini-batches with a seeded shuffle. Stateless by (epoch, index), so a
// resumed run draws exactly the batches it would have drawn.
#include <torch/torch.h>

#include <cstdint>

namespace vae_ebm {

struct BatcherOptions {
  BatcherOptions(int64_t batch_size) : batch_size_(batch_size) {}
  TORCH_ARG(int64_t, batch_size);
  TORCH_ARG(uint64_t, seed) = 0;
  TORCH_ARG(bool, shuffle) = true;
  TORCH_ARG(bool, drop_last) = true;
  // Re-binarise each batch with a Bernoulli draw keyed on (seed, epoch, index).
  TORCH_ARG(bool, dynamic_binarisation) = false;
};

class Batcher {
 public:
  // data: [N, D] float. Throws DataError if batch_size < 1 or > N (with drop_last).
  Batcher(torch::Tensor data, BatcherOptions options);

  int64_t batches_per_epoch() const;
  // Batch `index` (0-based) of epoch `epoch`: [batch_size, D] (the last may be
  // shorter without drop_last). The same (seed, epoch, index) always gives the same batch.
  torch::Tensor batch(int64_t epoch, int64_t index);
  // Rows [begin, begin + count) of that batch, equal to batch(epoch, index).narrow(0, begin,
  // count): one process's share in data-parallel training, so that the processes together
  // take each batch of the one shuffle. Only those rows are gathered, except with dynamic
  // binarisation, whose bits are drawn for the whole batch (and so are the same bits).
  torch::Tensor rows(int64_t epoch, int64_t index, int64_t begin, int64_t count);

 private:
  void check_index(int64_t epoch, int64_t index) const;  // DataError when out of range
  const torch::Tensor& permutation(int64_t epoch);

  torch::Tensor data_;
  BatcherOptions options_;
  int64_t cached_epoch_ = -1;
  torch::Tensor permutation_;
};

}  // namespace vae_ebm
