#pragma once
// torch::optim::Adam with its update done in one pass over each parameter. LibTorch 1.13's
// Adam::step makes six sweeps over memory per parameter (mul_, add_, mul_, addcmul_, then
// sqrt / div / add_ with two temporaries, then addcdiv_); this one reads p, g, m and v once
// and writes p, m and v once, each parameter's elements split over vae_ebm::num_threads()
// threads (prior/parallel.h) when there are enough of them. Same update, same state objects
// (AdamParamState under the same keys), so checkpoints are interchangeable with
// torch::optim::Adam's. Parameters that are not float32, contiguous and on the CPU, or
// options with weight decay or amsgrad, fall back to Adam::step. Measured by bench_ops;
// checked against torch::optim::Adam in tests/test_vae.cpp.
#include <torch/torch.h>

#include <vector>

namespace vae_ebm {

class FusedAdam : public torch::optim::Adam {
 public:
  FusedAdam(std::vector<torch::Tensor> params, torch::optim::AdamOptions options)
      : torch::optim::Adam(std::move(params), std::move(options)) {}
  torch::Tensor step(LossClosure closure = nullptr) override;

  // Leaves every parameter's gradient undefined, so that the next backward pass hands its
  // gradient tensors over instead of adding them into zeroed ones (LibTorch 1.13's
  // zero_grad() zeroes: one write and one read-add-write over every parameter per step).
  // Parameters without a gradient are skipped by step(), as by torch::optim::Adam.
  void zero_grad_to_none();
};

}  // namespace vae_ebm
