#include <torch/torch.h>

#include "common/fused_mlp.h"

#include <torch/csrc/autograd/graph_task.h>

#include <algorithm>
#include <vector>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "common/parallel.h"

namespace vae_ebm {

namespace {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Rows of a [rows, cols] pass go to one thread per this many values at most. A split starts
// threads and parks OpenBLAS's workers (parallel_run), which a pass over one batch's hidden
// layer does not repay: at 2^16 (the threads_for rule) bench_train at 2 threads fell from
// 18,400-18,600 to 17,400-17,600 images/s (exact) and from 15,200 to 14,700-14,800 (SNELBO).
constexpr int64_t kValuesPerThread = 1 << 20;

int parts_for(int64_t rows, int64_t cols) {
  return static_cast<int>(std::min<int64_t>(threads_for(rows * cols, kValuesPerThread), std::max<int64_t>(rows, 1)));
}

// y <- y if y > 0 else slope y, over n values. The loops take their operands as arguments
// (not captured by reference) and compute both branches, so that the compiler vectorises
// them (with -ftrapping-math it will not speculate the product of a conditional).
void activate_range(float* __restrict p, int64_t n, float s) {
  if (s == 0) {
    for (int64_t j = 0; j < n; ++j) p[j] = std::max(p[j], 0.0f);
  } else {
    for (int64_t j = 0; j < n; ++j) p[j] = std::max(p[j], 0.0f) + s * std::min(p[j], 0.0f);
  }
}

void activate(Tensor& y, double slope) {
  const int64_t rows = y.size(0), cols = y.size(1);
  float* data = y.data_ptr<float>();
  const int parts = parts_for(rows, cols);
  parallel_run(parts, [&](int i) {
    const int64_t begin = rows * i / parts, end = rows * (i + 1) / parts;
    activate_range(data + begin * cols, (end - begin) * cols, static_cast<float>(slope));
  });
}

// o <- a masked by the activation whose output is h (slope where h <= 0), over n values.
void mask_range(const float* __restrict a, const float* __restrict h, float* __restrict o, int64_t n, float s) {
  int64_t j = 0;
#if defined(__SSE2__)
  // GCC does not vectorise the select by itself ("control flow in loop").
  const __m128 zero = _mm_setzero_ps(), slope = _mm_set1_ps(s);
  for (; j + 4 <= n; j += 4) {
    const __m128 aj = _mm_loadu_ps(a + j);
    const __m128 positive = _mm_cmpgt_ps(_mm_loadu_ps(h + j), zero);
    _mm_storeu_ps(o + j, _mm_or_ps(_mm_and_ps(positive, aj), _mm_andnot_ps(positive, _mm_mul_ps(aj, slope))));
  }
#endif
  for (; j < n; ++j) o[j] = h[j] > 0 ? a[j] : s * a[j];
}

// sum[c] += the column sums of the rows of g.
void column_sums(const float* __restrict g, int64_t rows, int64_t cols, float* __restrict sum) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) sum[c] += g[r * cols + c];
}

// g <- grad_y masked by the activation whose output is y (when active; otherwise g is
// grad_y), and bias_grad += the column sums of g, row blocks split over the threads.
void activation_backward(const Tensor& grad_y, const Tensor& y, bool active, double slope, Tensor& g,
                         Tensor& bias_grad) {
  if (!active && !bias_grad.defined()) return;  // g is grad_y itself
  const int64_t rows = grad_y.size(0), cols = grad_y.size(1);
  const float* gy = grad_y.data_ptr<float>();
  const float* yy = y.data_ptr<float>();
  float* out = g.data_ptr<float>();
  const bool sums_wanted = bias_grad.defined();
  const int parts = parts_for(rows, cols);
  std::vector<float> sums(static_cast<size_t>(parts * cols), 0.0f);
  parallel_run(parts, [&](int i) {
    const int64_t begin = rows * i / parts, end = rows * (i + 1) / parts;
    // Blocks of rows that stay in cache between the mask and the sums.
    constexpr int64_t kBlock = 16;
    for (int64_t r = begin; r < end; r += kBlock) {
      const int64_t n = std::min(kBlock, end - r);
      if (active) mask_range(gy + r * cols, yy + r * cols, out + r * cols, n * cols, static_cast<float>(slope));
      if (sums_wanted) column_sums(out + r * cols, n, cols, sums.data() + i * cols);
    }
  });
  if (!sums_wanted) return;
  float* __restrict b = bias_grad.data_ptr<float>();
  for (int i = 0; i < parts; ++i)
    for (int64_t c = 0; c < cols; ++c) b[c] += sums[i * cols + c];
}

// True inside a backward() that accumulates into every leaf; false inside autograd::grad or
// backward(inputs=...), which capture gradients instead.
bool accumulating_into_leaves() {
  const auto* info = torch::autograd::get_current_graph_task_exec_info();
  return info == nullptr || info->empty();
}

// The parameter's .grad, if the product can add into it in place.
Tensor* grad_in_place(const Tensor& param) {
  auto& grad = const_cast<Tensor&>(param).mutable_grad();
  if (!grad.defined() || !grad.is_contiguous() || grad.sizes() != param.sizes() ||
      grad.scalar_type() != torch::kFloat || !grad.device().is_cpu())
    return nullptr;
  return &grad;
}

// One Linear layer and the activation after it (active: a LeakyReLU with this slope, 0 for
// ReLU; otherwise none). Inputs: x [rows, in], weight [out, in], bias [out] or, for a layer
// without one, an empty tensor (a custom function's tensor inputs must be defined). The
// parameters are leaves, saved as themselves, so that backward reaches their .grad.
struct LinearActivation : torch::autograd::Function<LinearActivation> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& weight, const Tensor& bias, bool active,
                        double slope) {
    const bool has_bias = bias.numel() > 0;
    auto y = has_bias ? at::addmm(bias, x, weight.t()) : at::mm(x, weight.t());
    if (active) activate(y, slope);
    ctx->save_for_backward({x, weight, has_bias ? bias : Tensor(), y});
    ctx->saved_data["active"] = active;
    ctx->saved_data["slope"] = slope;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &weight = saved[1], &bias = saved[2], &y = saved[3];
    const bool active = ctx->saved_data["active"].toBool();
    const double slope = ctx->saved_data["slope"].toDouble();
    const bool in_place = accumulating_into_leaves();
    const bool want_x = ctx->needs_input_grad(0), want_w = ctx->needs_input_grad(1);
    const bool want_b = bias.defined() && ctx->needs_input_grad(2);
    auto grad_y = grads[0].contiguous();

    // The pre-activation gradient, and the bias gradient from the same pass: added into
    // the bias's .grad when it can be, otherwise returned.
    Tensor grad_b;
    Tensor* bias_grad = want_b && in_place ? grad_in_place(bias) : nullptr;
    if (want_b) grad_b = bias_grad ? *bias_grad : torch::zeros({y.size(1)}, y.options());
    Tensor g = active ? torch::empty_like(grad_y) : grad_y;
    activation_backward(grad_y, y, active, slope, g, grad_b);
    if (bias_grad) grad_b = Tensor();

    Tensor grad_x, grad_w;
    if (want_w) {
      if (Tensor* weight_grad = in_place ? grad_in_place(weight) : nullptr)
        weight_grad->addmm_(g.t(), x);  // beta = 1: no zeroing pass, no allocation
      else
        grad_w = g.t().mm(x);
    }
    if (want_x) grad_x = g.mm(weight);
    return {grad_x, grad_w, grad_b, Tensor(), Tensor()};
  }
};

bool fusable(const Tensor& x) { return x.dim() == 2 && x.scalar_type() == torch::kFloat && x.device().is_cpu(); }

}  // namespace

torch::Tensor fused_mlp_forward(torch::nn::Sequential& net, const torch::Tensor& x) {
  if (!fusable(x)) return net->forward(x);
  const auto modules = net->children();
  Tensor h = x.contiguous();
  for (size_t i = 0; i < modules.size(); ++i) {
    auto* linear = modules[i]->as<torch::nn::LinearImpl>();
    if (!linear || !fusable(linear->weight)) {
      h = (net->begin() + static_cast<std::ptrdiff_t>(i))->forward(h);
      continue;
    }
    // The activation after the layer, if it is one the node knows (a negative LeakyReLU
    // slope would flip the mask's sign test, so that one runs as its own module).
    bool active = false;
    double slope = 0;
    if (i + 1 < modules.size()) {
      if (modules[i + 1]->as<torch::nn::ReLUImpl>()) {
        active = true;
      } else if (auto* leaky = modules[i + 1]->as<torch::nn::LeakyReLUImpl>()) {
        slope = leaky->options.negative_slope();
        active = slope >= 0;
      }
    }
    const auto& bias = linear->bias;
    const bool grad = torch::GradMode::is_enabled() &&
                      (h.requires_grad() || linear->weight.requires_grad() || (bias.defined() && bias.requires_grad()));
    if (grad) {
      h = LinearActivation::apply(h, linear->weight, bias.defined() ? bias : torch::empty({0}, h.options()), active,
                                  slope);
    } else {
      h = bias.defined() ? at::addmm(bias, h, linear->weight.t()) : at::mm(h, linear->weight.t());
      if (active) activate(h, slope);
    }
    if (active) ++i;  // the activation is done
  }
  return h;
}

}  // namespace vae_ebm
