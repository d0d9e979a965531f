#include <torch/torch.h>

#include "vae/conv_transpose.h"

#include <algorithm>
#include <cstring>

namespace vae_ebm {

namespace {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct Geometry {
  int64_t n, hi, wi, cin, cout, k, stride, padding, ho, wo;
  int64_t block() const { return k * k * cout; }  // one input pixel's column block
  // Images per chunk: the chunk's columns stay near 2^22 floats (16 MB, within the last-level
  // cache of the machines measured), so that col2im reads them back from the cache.
  int64_t chunk() const { return std::max<int64_t>(1, (int64_t{1} << 22) / (hi * wi * block())); }
};

Geometry geometry(const Tensor& x, const Tensor& weight, int64_t stride, int64_t padding) {
  TORCH_CHECK(x.dim() == 4, "conv_transpose2d_nhwc: x must be [N, H, W, C], got ", x.sizes());
  TORCH_CHECK(weight.dim() == 4 && weight.size(2) == weight.size(3),
              "conv_transpose2d_nhwc: weight must be [Cin, Cout, k, k], got ", weight.sizes());
  TORCH_CHECK(x.size(3) == weight.size(0), "conv_transpose2d_nhwc: x has ", x.size(3), " channels, weight expects ",
              weight.size(0));
  TORCH_CHECK(x.scalar_type() == torch::kFloat && weight.scalar_type() == torch::kFloat,
              "conv_transpose2d_nhwc: float32 only");
  Geometry g{x.size(0), x.size(1), x.size(2), x.size(3), weight.size(1), weight.size(2), stride, padding, 0, 0};
  g.ho = (g.hi - 1) * stride - 2 * padding + g.k;
  g.wo = (g.wi - 1) * stride - 2 * padding + g.k;
  TORCH_CHECK(g.ho > 0 && g.wo > 0, "conv_transpose2d_nhwc: empty output");
  return g;
}

// W [Cin, Cout, k, k] -> [Cin, k k Cout], the column block's order (ky, kx, c).
Tensor weight_matrix(const Tensor& weight, const Geometry& g) {
  return weight.permute({0, 2, 3, 1}).reshape({g.cin, g.block()}).contiguous();
}

// Calls fn(ky, kx, oy, ox) for every kernel tap of input pixel (iy, ix) that lands inside the output.
template <class F>
inline void for_each_tap(const Geometry& g, int64_t iy, int64_t ix, F&& fn) {
  for (int64_t ky = 0; ky < g.k; ++ky) {
    const int64_t oy = iy * g.stride - g.padding + ky;
    if (oy < 0 || oy >= g.ho) continue;
    for (int64_t kx = 0; kx < g.k; ++kx) {
      const int64_t ox = ix * g.stride - g.padding + kx;
      if (ox < 0 || ox >= g.wo) continue;
      fn(ky, kx, oy, ox);
    }
  }
}

void add_into(float* __restrict out, const float* __restrict in, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] += in[i];
}

// out[image, oy, ox, :] += cols[image - first, iy, ix, ky, kx, :] for the chunk's images.
void col2im(const float* cols, float* out, const Geometry& g, int64_t first, int64_t count) {
  for (int64_t i = 0; i < count; ++i)
    for (int64_t iy = 0; iy < g.hi; ++iy)
      for (int64_t ix = 0; ix < g.wi; ++ix) {
        const float* c = cols + ((i * g.hi + iy) * g.wi + ix) * g.block();
        float* o = out + (first + i) * g.ho * g.wo * g.cout;
        for_each_tap(g, iy, ix, [&](int64_t ky, int64_t kx, int64_t oy, int64_t ox) {
          add_into(o + (oy * g.wo + ox) * g.cout, c + (ky * g.k + kx) * g.cout, g.cout);
        });
      }
}

// cols[image - first, iy, ix, ky, kx, :] = grad[image, oy, ox, :], or 0 where the tap falls outside.
void im2col(const float* grad, float* cols, const Geometry& g, int64_t first, int64_t count) {
  for (int64_t i = 0; i < count; ++i)
    for (int64_t iy = 0; iy < g.hi; ++iy)
      for (int64_t ix = 0; ix < g.wi; ++ix) {
        float* c = cols + ((i * g.hi + iy) * g.wi + ix) * g.block();
        std::memset(c, 0, sizeof(float) * g.block());
        const float* src = grad + (first + i) * g.ho * g.wo * g.cout;
        for_each_tap(g, iy, ix, [&](int64_t ky, int64_t kx, int64_t oy, int64_t ox) {
          std::memcpy(c + (ky * g.k + kx) * g.cout, src + (oy * g.wo + ox) * g.cout, sizeof(float) * g.cout);
        });
      }
}

struct ConvTranspose2dNhwc : torch::autograd::Function<ConvTranspose2dNhwc> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x_in, const Tensor& weight, const Tensor& bias,
                        int64_t stride, int64_t padding) {
    const Tensor x = x_in.contiguous();
    const Geometry g = geometry(x, weight, stride, padding);
    ctx->save_for_backward({x, weight});
    ctx->saved_data["stride"] = stride;
    ctx->saved_data["padding"] = padding;
    const Tensor w = weight_matrix(weight, g);
    Tensor out = bias.reshape({1, 1, 1, g.cout}).expand({g.n, g.ho, g.wo, g.cout}).contiguous();
    const Tensor rows = x.view({g.n * g.hi * g.wi, g.cin});
    const int64_t chunk = g.chunk(), pixels = g.hi * g.wi;
    Tensor cols = torch::empty({std::min(chunk, g.n) * pixels, g.block()}, x.options());
    for (int64_t first = 0; first < g.n; first += chunk) {
      const int64_t count = std::min(chunk, g.n - first);
      auto c = cols.narrow(0, 0, count * pixels);
      torch::mm_out(c, rows.narrow(0, first * pixels, count * pixels), w);
      col2im(c.data_ptr<float>(), out.data_ptr<float>(), g, first, count);
    }
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const Tensor &x = saved[0], &weight = saved[1];
    const Geometry g = geometry(x, weight, ctx->saved_data["stride"].toInt(), ctx->saved_data["padding"].toInt());
    const Tensor grad = grads[0].contiguous();
    const bool want_x = ctx->needs_input_grad(0), want_w = ctx->needs_input_grad(1);
    Tensor dx, dw, db;
    if (want_x || want_w) {
      const Tensor w = weight_matrix(weight, g);
      const Tensor rows = x.view({g.n * g.hi * g.wi, g.cin});
      if (want_x) dx = torch::empty_like(x);
      Tensor dw_matrix = want_w ? torch::zeros({g.cin, g.block()}, x.options()) : Tensor();
      const int64_t chunk = g.chunk(), pixels = g.hi * g.wi;
      Tensor cols = torch::empty({std::min(chunk, g.n) * pixels, g.block()}, x.options());
      for (int64_t first = 0; first < g.n; first += chunk) {
        const int64_t count = std::min(chunk, g.n - first);
        auto c = cols.narrow(0, 0, count * pixels);
        im2col(grad.data_ptr<float>(), c.data_ptr<float>(), g, first, count);
        if (want_x) {
          auto d = dx.view({g.n * pixels, g.cin}).narrow(0, first * pixels, count * pixels);
          torch::mm_out(d, c, w.t());
        }
        if (want_w) dw_matrix.addmm_(rows.narrow(0, first * pixels, count * pixels).t(), c);
      }
      if (want_w) dw = dw_matrix.view({g.cin, g.k, g.k, g.cout}).permute({0, 3, 1, 2}).contiguous();
    }
    if (ctx->needs_input_grad(2)) db = grad.view({-1, g.cout}).sum(0);
    return {dx, dw, db, Tensor(), Tensor()};
  }
};

}  // namespace

Tensor conv_transpose2d_nhwc(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t stride,
                             int64_t padding) {
  if (!x.device().is_cpu()) {
    // Other devices: LibTorch's own, through NCHW.
    auto y = torch::conv_transpose2d(x.permute({0, 3, 1, 2}), weight, bias, stride, padding);
    return y.permute({0, 2, 3, 1}).contiguous();
  }
  // A custom autograd function cannot take an undefined tensor: no bias is a zero bias that
  // needs no gradient.
  return ConvTranspose2dNhwc::apply(x, weight, bias.defined() ? bias : torch::zeros({weight.size(1)}, weight.options()),
                                    stride, padding);
}

}  // namespace vae_ebm
