#pragma once
// torch::optim::Adam with its update done in one pass over each parameter. LibTorch 1.13's
// Adam::step makes six sweeps over memory per parameter (mul_, add_, mul_, addcmul_, then
// sqrt / div / add_ with two temporaries, then addcdiv_); this one reads p, g, m and v once
// and writes p, m and v once (and zeroes g in the same pass), each parameter's elements
// split over vae_ebm::num_threads() threads (common/parallel.h) when there are enough of
// them. Same update, same state objects (AdamParamState under the same keys), so
// checkpoints are interchangeable with torch::optim::Adam's. Parameters that are not
// float32, contiguous and on the CPU, or options with weight decay or amsgrad, fall back to
// Adam::step. Measured by bench_ops; checked against torch::optim::Adam in
// tests/test_vae.cpp.
#include <torch/torch.h>

#include <vector>

namespace vae_ebm {

class FusedAdam : public torch::optim::Adam {
 public:
  FusedAdam(std::vector<torch::Tensor> params, torch::optim::AdamOptions options)
      : torch::optim::Adam(std::move(params), std::move(options)) {}
  torch::Tensor step(LossClosure closure = nullptr) override;

  // Readies the gradients for the next backward pass. After a fused step they are zero
  // already (zeroed in the update's own pass, while in cache), so the MLPs' products add
  // into them with no zeroing pass or allocation (common/fused_mlp.h); after an unfused
  // step they are left undefined, so that the backward pass hands its tensors over
  // (LibTorch 1.13's zero_grad() zeroes: one write and one read-add-write over every
  // parameter). Parameters without a gradient are skipped by step(), as by
  // torch::optim::Adam.
  void clear_grads();

 private:
  torch::Tensor unfused_step(LossClosure closure);
  bool zeroed_grads_ = false;  // the last step zeroed every gradient it read
};

}  // namespace vae_ebm
