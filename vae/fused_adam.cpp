#include <torch/torch.h>

#include "vae/fused_adam.h"

#include <cmath>
#include <vector>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "common/parallel.h"

namespace vae_ebm {

namespace {

bool fusable(const torch::Tensor& p) {
  const auto& g = p.grad();
  return p.scalar_type() == torch::kFloat && p.device().is_cpu() && p.is_contiguous() &&
         (!g.defined() || (g.scalar_type() == torch::kFloat && g.is_contiguous() && !g.is_sparse()));
}

// Sets the SSE unit to flush denormal results and inputs to zero while it lives. A parameter
// whose gradient stays zero (a dead ReLU unit's weights) sees m halve every step (beta1 0.5)
// and reach the denormal range within 130 steps; on Intel cores every operation on a denormal
// takes a microcode assist of about a hundred cycles, which made this update 2x slower than
// LibTorch's Adam there (bench_ops, whose timed steps had zero gradients: issue 19). Flushed, such
// an m is 0 instead of below 1.2e-38, which moves its parameter by less than 1e-30 either way.
class FlushDenormals {
 public:
#if defined(__SSE2__)
  FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040); }  // FTZ (bit 15) | DAZ (bit 6)
  ~FlushDenormals() { _mm_setcsr(saved_); }

 private:
  unsigned saved_;
#endif
};

// m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;  p <- p - step m / (sqrt(v) / sqrt(bc2) + eps);  g <- 0
void update(float* __restrict p, float* __restrict g, float* __restrict m, float* __restrict v, int64_t n,
            float b1, float b2, float step, float inv_sqrt_bc2, float eps) {
  const float c1 = 1.0f - b1, c2 = 1.0f - b2;
  FlushDenormals flush;
  int64_t i = 0;
#if defined(__SSE2__)
  const __m128 vb1 = _mm_set1_ps(b1), vb2 = _mm_set1_ps(b2), vc1 = _mm_set1_ps(c1), vc2 = _mm_set1_ps(c2);
  const __m128 vstep = _mm_set1_ps(step), vib = _mm_set1_ps(inv_sqrt_bc2), veps = _mm_set1_ps(eps);
  for (; i + 4 <= n; i += 4) {
    const __m128 gi = _mm_loadu_ps(g + i);
    const __m128 mi = _mm_add_ps(_mm_mul_ps(_mm_loadu_ps(m + i), vb1), _mm_mul_ps(gi, vc1));
    const __m128 vi = _mm_add_ps(_mm_mul_ps(_mm_loadu_ps(v + i), vb2), _mm_mul_ps(_mm_mul_ps(gi, gi), vc2));
    const __m128 denom = _mm_add_ps(_mm_mul_ps(_mm_sqrt_ps(vi), vib), veps);
    _mm_storeu_ps(p + i, _mm_sub_ps(_mm_loadu_ps(p + i), _mm_div_ps(_mm_mul_ps(mi, vstep), denom)));
    _mm_storeu_ps(m + i, mi);
    _mm_storeu_ps(v + i, vi);
    _mm_storeu_ps(g + i, _mm_setzero_ps());
  }
#endif
  for (; i < n; ++i) {
    const float mi = m[i] * b1 + g[i] * c1;
    const float vi = v[i] * b2 + g[i] * g[i] * c2;
    p[i] -= mi * step / (std::sqrt(vi) * inv_sqrt_bc2 + eps);
    m[i] = mi;
    v[i] = vi;
    g[i] = 0.0f;
  }
}

}  // namespace

torch::Tensor FusedAdam::step(LossClosure closure) {
  for (auto& group : param_groups_) {
    const auto& options = static_cast<const torch::optim::AdamOptions&>(group.options());
    if (options.weight_decay() != 0 || options.amsgrad()) return unfused_step(std::move(closure));
    for (const auto& p : group.params())
      if (!fusable(p)) return unfused_step(std::move(closure));
  }
  zeroed_grads_ = true;
  torch::NoGradGuard no_grad;
  torch::Tensor loss;
  if (closure != nullptr) {
    torch::AutoGradMode enable_grad(true);
    loss = closure();
  }
  // One update per parameter; the elements of each are split over the threads (the update
  // is memory-bound: 28 bytes per element).
  struct Job {
    float *p, *m, *v, *g;
    int64_t n;
    float b1, b2, step, inv_sqrt_bc2, eps;
  };
  std::vector<Job> jobs;
  int64_t total = 0;
  for (auto& group : param_groups_) {
    const auto& options = static_cast<const torch::optim::AdamOptions&>(group.options());
    const double beta1 = std::get<0>(options.betas()), beta2 = std::get<1>(options.betas());
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const auto key = c10::guts::to_string(p.unsafeGetTensorImpl());  // Adam's own key
      auto found = state_.find(key);
      if (found == state_.end()) {
        auto state = std::make_unique<torch::optim::AdamParamState>();
        state->step(0);
        state->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Contiguous));
        state->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Contiguous));
        found = state_.emplace(key, std::move(state)).first;
      }
      auto& state = static_cast<torch::optim::AdamParamState&>(*found->second);
      TORCH_CHECK(state.exp_avg().is_contiguous() && state.exp_avg_sq().is_contiguous(),
                  "FusedAdam: the moment estimates must be contiguous");
      state.step(state.step() + 1);
      const double bc1 = 1 - std::pow(beta1, static_cast<double>(state.step()));
      const double bc2 = 1 - std::pow(beta2, static_cast<double>(state.step()));
      jobs.push_back({p.data_ptr<float>(), state.exp_avg().data_ptr<float>(), state.exp_avg_sq().data_ptr<float>(),
                      p.grad().data_ptr<float>(), p.numel(), static_cast<float>(beta1), static_cast<float>(beta2),
                      static_cast<float>(options.lr() / bc1), static_cast<float>(1 / std::sqrt(bc2)),
                      static_cast<float>(options.eps())});
      total += p.numel();
    }
  }
  const int parts = threads_for(total);
  parallel_run(parts, [&](int i) {
    for (const auto& j : jobs) {
      const int64_t begin = j.n * i / parts, end = j.n * (i + 1) / parts;
      update(j.p + begin, j.g + begin, j.m + begin, j.v + begin, end - begin, j.b1, j.b2, j.step, j.inv_sqrt_bc2,
             j.eps);
    }
  });
  return loss;
}

torch::Tensor FusedAdam::unfused_step(LossClosure closure) {
  zeroed_grads_ = false;
  return torch::optim::Adam::step(std::move(closure));
}

void FusedAdam::clear_grads() {
  if (zeroed_grads_) return;
  for (auto& group : param_groups_)
    for (auto& p : group.params()) p.mutable_grad() = torch::Tensor();
}

}  // namespace vae_ebm
