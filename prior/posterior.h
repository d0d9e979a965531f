#pragma once
// The diagonal Gaussian q(z|x) = N(mu, diag exp(logvar)) that encoders return.
#include <torch/torch.h>

#include "common/distributed.h"

namespace vae_ebm {

struct DiagonalGaussian {
  torch::Tensor mu;      // [B, D]
  torch::Tensor logvar;  // [B, D]

  int64_t batch() const { return mu.size(0); }
  int64_t dim() const { return mu.size(1); }
  torch::Tensor mean() const { return mu; }
  // K reparameterised samples: [K, B, D] = mu + exp(logvar / 2) * eps.
  torch::Tensor rsample(int64_t k, at::Generator& generator) const;
  // The same for this process's rows of a data-parallel batch (these B rows are `shard` of
  // shard.global): the noise is drawn for the whole batch, [K, global, D], and this process's
  // rows kept, so the samples are those a single process would draw for them.
  torch::Tensor rsample(int64_t k, at::Generator& generator, const BatchShard& shard) const;
  // log q(z|x) for z [K, B, D] (or [B, D]) -> [K, B] (or [B]).
  torch::Tensor log_prob(const torch::Tensor& z) const;
  // Analytic entropy H[q] per row: [B].
  torch::Tensor entropy() const;
  DiagonalGaussian detach() const { return {mu.detach(), logvar.detach()}; }
  // E_q[log N(z; 0, I)] in closed form per row: -1/2 sum(mu^2 + sigma^2) - D/2 log 2 pi, [B].
  torch::Tensor expected_standard_normal_log_prob() const;
  // The Gaussian moment-matched to the batch's aggregate posterior (the uniform mixture of
  // the rows), detached: mu and logvar [1, D].
  DiagonalGaussian aggregate_moment_match() const;
};

// log N(z; 0, I) summed over the last dimension: [..., D] -> [...].
torch::Tensor standard_normal_log_prob(const torch::Tensor& z);

}  // namespace vae_ebm
