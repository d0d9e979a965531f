#pragma once
// PROTOTYPE (bench only, a proposal for vae/trainer.cpp): Adam as one pass over each
// float32 parameter, instead of torch::optim::Adam's six tensor operations per parameter
// (mul_, add_, mul_, addcmul_, sqrt + div + add_ (two temporaries), addcdiv_), each a full
// sweep of memory. The update is the same as LibTorch 1.13's Adam (no weight decay, no
// amsgrad):
//   m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
//   p <- p - (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// bench_ops checks it against torch::optim::Adam and times both.
#include <torch/torch.h>

#include <cmath>
#include <vector>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

namespace vae_ebm::bench {

class FusedAdam {
 public:
  FusedAdam(std::vector<torch::Tensor> params, double lr, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8)
      : params_(std::move(params)), lr_(lr), beta1_(beta1), beta2_(beta2), eps_(eps) {
    for (auto& p : params_) {
      TORCH_CHECK(p.scalar_type() == torch::kFloat && p.is_contiguous() && p.device().is_cpu(),
                  "FusedAdam: float32 contiguous CPU parameters only");
      m_.push_back(torch::zeros_like(p));
      v_.push_back(torch::zeros_like(p));
    }
  }

  void zero_grad() {
    for (auto& p : params_)
      if (p.grad().defined()) p.mutable_grad().zero_();
  }

  void step() {
    ++t_;
    const float b1 = static_cast<float>(beta1_), b2 = static_cast<float>(beta2_);
    const float c1 = static_cast<float>(1 - beta1_), c2 = static_cast<float>(1 - beta2_);
    const float step_size = static_cast<float>(lr_ / (1 - std::pow(beta1_, t_)));
    const float inv_sqrt_bc2 = static_cast<float>(1 / std::sqrt(1 - std::pow(beta2_, t_)));
    const float eps = static_cast<float>(eps_);
    for (size_t j = 0; j < params_.size(); ++j) {
      const auto& grad = params_[j].grad();
      if (!grad.defined()) continue;
      TORCH_CHECK(grad.is_contiguous(), "FusedAdam: contiguous gradients only");
      float* __restrict p = params_[j].data_ptr<float>();
      const float* __restrict g = grad.data_ptr<float>();
      float* __restrict m = m_[j].data_ptr<float>();
      float* __restrict v = v_[j].data_ptr<float>();
      const int64_t n = params_[j].numel();
      int64_t i = 0;
#if defined(__SSE2__)
      const __m128 vb1 = _mm_set1_ps(b1), vb2 = _mm_set1_ps(b2), vc1 = _mm_set1_ps(c1), vc2 = _mm_set1_ps(c2);
      const __m128 vss = _mm_set1_ps(step_size), vib = _mm_set1_ps(inv_sqrt_bc2), veps = _mm_set1_ps(eps);
      for (; i + 4 <= n; i += 4) {
        __m128 gi = _mm_loadu_ps(g + i);
        __m128 mi = _mm_add_ps(_mm_mul_ps(_mm_loadu_ps(m + i), vb1), _mm_mul_ps(gi, vc1));
        __m128 vi = _mm_add_ps(_mm_mul_ps(_mm_loadu_ps(v + i), vb2), _mm_mul_ps(_mm_mul_ps(gi, gi), vc2));
        __m128 denom = _mm_add_ps(_mm_mul_ps(_mm_sqrt_ps(vi), vib), veps);
        _mm_storeu_ps(p + i, _mm_sub_ps(_mm_loadu_ps(p + i), _mm_div_ps(_mm_mul_ps(mi, vss), denom)));
        _mm_storeu_ps(m + i, mi);
        _mm_storeu_ps(v + i, vi);
      }
#endif
      for (; i < n; ++i) {
        const float gi = g[i];
        const float mi = m[i] * b1 + gi * c1;
        const float vi = v[i] * b2 + gi * gi * c2;
        p[i] -= mi * step_size / (std::sqrt(vi) * inv_sqrt_bc2 + eps);
        m[i] = mi;
        v[i] = vi;
      }
    }
  }

 private:
  std::vector<torch::Tensor> params_, m_, v_;
  double lr_, beta1_, beta2_, eps_;
  int64_t t_ = 0;
};

}  // namespace vae_ebm::bench
