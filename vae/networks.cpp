#include <torch/torch.h>

#include "vae/networks.h"

#include <algorithm>
#include <functional>
#include <stdexcept>

#include "common/registry.h"
#include "common/fused_mlp.h"
#include "common/parallel.h"
#include "vae/conv_transpose.h"

namespace vae_ebm {

namespace nn = torch::nn;

std::vector<std::string> activations() { return {"relu", "leaky-relu", "tanh", "elu", "softplus"}; }

namespace {

nn::AnyModule make_activation(const std::string& name) {
  if (name == "relu") return nn::AnyModule(nn::ReLU());
  if (name == "leaky-relu") return nn::AnyModule(nn::LeakyReLU(nn::LeakyReLUOptions().negative_slope(0.2)));
  if (name == "tanh") return nn::AnyModule(nn::Tanh());
  if (name == "elu") return nn::AnyModule(nn::ELU());
  if (name == "softplus") return nn::AnyModule(nn::Softplus());
  throw OptionError("activation", "unknown activation '" + name + "' (valid: " + join_names(activations()) + ")");
}

nn::Sequential mlp(int64_t in, const std::vector<int64_t>& hidden, int64_t out, const std::string& act) {
  nn::Sequential net;
  for (auto width : hidden) {
    net->push_back(nn::Linear(in, width));
    net->push_back(make_activation(act));
    in = width;
  }
  net->push_back(nn::Linear(in, out));
  return net;
}

class MlpEncoder : public Encoder {
 public:
  explicit MlpEncoder(const NetworkOptions& o) : Encoder("MlpEncoder"), latent_(o.latent_dim()) {
    net_ = register_module("net", mlp(o.pixels(), o.hidden(), 2 * o.latent_dim(), o.activation()));
  }
  DiagonalGaussian forward(const torch::Tensor& x) override {
    auto h = fused_mlp_forward(net_, x);
    return {h.narrow(1, 0, latent_), h.narrow(1, latent_, latent_)};
  }

 private:
  int64_t latent_;
  nn::Sequential net_{nullptr};
};

class MlpDecoder : public Decoder {
 public:
  explicit MlpDecoder(const NetworkOptions& o) : Decoder("MlpDecoder") {
    std::vector<int64_t> reversed(o.hidden().rbegin(), o.hidden().rend());
    net_ = register_module("net", mlp(o.latent_dim(), reversed, o.outputs_per_value() * o.pixels(), o.activation()));
  }
  torch::Tensor params(const torch::Tensor& z) override {
    if (z.dim() == 2) return fused_mlp_forward(net_, z);
    // [K, B, D] as [K B, D]: a Linear on 2-d input is one addmm with the bias inside the
    // product, on more dimensions a matmul and a separate bias pass (forward and backward).
    auto lead = z.sizes().vec();
    auto out = fused_mlp_forward(net_, z.reshape({-1, z.size(-1)}));
    lead.back() = out.size(-1);
    return out.reshape(lead);
  }

 private:
  nn::Sequential net_{nullptr};
};

// The SNL reference networks for 28x28 images.
class ConvEncoder : public Encoder {
 public:
  explicit ConvEncoder(const NetworkOptions& o) : Encoder("ConvEncoder"), latent_(o.latent_dim()) {
    auto conv = [](int64_t in, int64_t out) { return nn::Conv2d(nn::Conv2dOptions(in, out, 5).stride(2).padding(2)); };
    auto act = [] { return nn::LeakyReLU(nn::LeakyReLUOptions().negative_slope(0.3)); };
    net_ = register_module("net", nn::Sequential(conv(1, 32), act(), conv(32, 64), act(), conv(64, 128), act(),
                                                 nn::Flatten(), nn::Linear(2048, 2 * o.latent_dim())));
  }
  DiagonalGaussian forward(const torch::Tensor& x) override {
    auto h = net_->forward(x.reshape({-1, 1, 28, 28}));
    return {h.narrow(1, 0, latent_), h.narrow(1, latent_, latent_)};
  }

 private:
  int64_t latent_;
  nn::Sequential net_{nullptr};
};

// A transposed convolution of channels-last activations [N, H, W, C] by an
// nn::ConvTranspose2d's parameters: the fast path (vae/conv_transpose.h) for float32, which
// takes square kernels and one stride and padding for both sides (as every layer here has);
// LibTorch's own, through NCHW, for other types.
torch::Tensor transposed_conv_nhwc(const torch::Tensor& h, const nn::ConvTranspose2dImpl& layer) {
  const auto& o = layer.options;
  const int64_t stride = o.stride()->at(0), padding = c10::get<torch::ExpandingArray<2>>(o.padding())->at(0);
  if (h.scalar_type() == torch::kFloat) return conv_transpose2d_nhwc(h, layer.weight, layer.bias, stride, padding);
  return torch::conv_transpose2d(h.permute({0, 3, 1, 2}), layer.weight, layer.bias, stride, padding)
      .permute({0, 2, 3, 1});
}

// Decoder output [N, H, W, M C] channels-last, channel j C + c holding parameter j of
// channel c, as the contract's [lead..., M P] with parameter j of value p = (c H + y) W + x
// at j P + p.
torch::Tensor params_layout(const torch::Tensor& h, std::vector<int64_t> lead, int64_t m, int64_t c) {
  const int64_t n = h.size(0), height = h.size(1), width = h.size(2);
  lead.push_back(m * c * height * width);
  if (m * c == 1) return h.reshape(lead);  // [N, H, W, 1] is already in C, H, W order
  return h.reshape({n, height, width, m, c}).permute({0, 3, 4, 1, 2}).reshape(lead);
}

class ConvDecoder : public Decoder {
 public:
  explicit ConvDecoder(const NetworkOptions& o)
      : Decoder("ConvDecoder"), latent_(o.latent_dim()), outputs_(o.outputs_per_value()) {
    auto convt = [](int64_t in, int64_t out, int64_t k, int64_t s, int64_t p) {
      return nn::ConvTranspose2d(nn::ConvTranspose2dOptions(in, out, k).stride(s).padding(p));
    };
    auto act = [] { return nn::LeakyReLU(nn::LeakyReLUOptions().negative_slope(0.01)); };
    // M = 1: the reference's modules exactly (and its checkpoints); M > 1: M output channels.
    net_ = register_module("net", nn::Sequential(convt(o.latent_dim(), 512, 4, 1, 0), act(), convt(512, 256, 3, 2, 1),
                                                 act(), convt(256, 128, 4, 2, 1), act(),
                                                 convt(128, o.outputs_per_value(), 4, 2, 1)));
  }
  // The layers run channels-last, each transposed convolution as one product over many
  // images (vae/conv_transpose.h); the modules stay as they were, and so do checkpoints.
  torch::Tensor params(const torch::Tensor& z) override {
    auto lead = z.sizes().vec();
    lead.pop_back();
    auto h = z.reshape({-1, 1, 1, latent_});  // [N, H, W, C]
    for (const auto& layer : net_->children()) {
      if (auto* convt = layer->as<nn::ConvTranspose2d>()) {
        h = transposed_conv_nhwc(h, *convt);
      } else if (auto* act = layer->as<nn::LeakyReLU>()) {
        h = torch::leaky_relu(h, act->options.negative_slope());
      } else {
        throw std::logic_error("ConvDecoder: unexpected layer " + layer->name());
      }
    }
    return params_layout(h, lead, outputs_, 1);  // [N, 28, 28, M]
  }

 private:
  int64_t latent_, outputs_;
  nn::Sequential net_{nullptr};
};

// The conv family, for images C x H x W other than the reference's 1x28x28 (the shape of
// Pang et al. 2020's SVHN/CIFAR-10 networks). With w = conv_width, M = outputs_per_value and
// n = conv_family_geometry's stages (max(1, round(log2(max(H, W) / 4))): the start nearest
// 4x4; 3 for 32x32, 4 for 64x64):
//   decoder: z [D] as a 1x1 map -> ConvTranspose(D, 8w, kernel start_h x start_w, stride 1,
//     pad 0) -> 8w @ start (4x4 from 32x32 or 64x64, ceil(side / 2^n) otherwise), then n
//     stages ConvTranspose(k4, stride 2, pad 1), each doubling the side and halving the
//     channels (8w / 2^i, at least 1), the last to C M channels; LeakyReLU(0.2) between.
//     The canvas start 2^n is cropped centrally to H x W (the odd row or column off the
//     bottom or right). For 3x32x32, w = 64: 512@4x4 -> 256@8x8 -> 128@16x16 -> 3@32x32.
//   encoder: the image zero-padded centrally to the canvas, then n stages Conv(k4, stride 2,
//     pad 1) with w, 2w, 4w, 8w, 8w, ... channels (at most 8w), LeakyReLU(0.2) after each
//     -> channels @ start -> flatten -> Linear(., 2D) = [mu | logvar].
// The first decoder layer on its 1x1 input is one product (z by the weight as [D, start 8w]);
// the stages run channels-last through the fast transposed convolution, the encoder through
// LibTorch's Conv2d.
class ConvFamilyEncoder : public Encoder {
 public:
  explicit ConvFamilyEncoder(const NetworkOptions& o)
      : Encoder("ConvFamilyEncoder"), latent_(o.latent_dim()), g_(conv_family_geometry(o)) {
    nn::Sequential net;
    const auto& ch = g_.encoder_channels;
    for (size_t i = 1; i < ch.size(); ++i) {
      net->push_back(nn::Conv2d(nn::Conv2dOptions(ch[i - 1], ch[i], 4).stride(2).padding(1)));
      net->push_back(nn::LeakyReLU(nn::LeakyReLUOptions().negative_slope(0.2)));
    }
    net->push_back(nn::Flatten());
    net->push_back(nn::Linear(ch.back() * g_.start_h * g_.start_w, 2 * o.latent_dim()));
    net_ = register_module("net", net);
  }
  DiagonalGaussian forward(const torch::Tensor& x) override {
    auto images = x.reshape({-1, g_.channels, g_.height, g_.width});
    if (g_.canvas_h != g_.height || g_.canvas_w != g_.width)
      images = torch::constant_pad_nd(images, {g_.left, g_.canvas_w - g_.width - g_.left, g_.top,
                                               g_.canvas_h - g_.height - g_.top});
    auto h = net_->forward(images);
    return {h.narrow(1, 0, latent_), h.narrow(1, latent_, latent_)};
  }

 private:
  int64_t latent_;
  ConvFamilyGeometry g_;
  nn::Sequential net_{nullptr};
};

class ConvFamilyDecoder : public Decoder {
 public:
  explicit ConvFamilyDecoder(const NetworkOptions& o)
      : Decoder("ConvFamilyDecoder"), latent_(o.latent_dim()), outputs_(o.outputs_per_value()),
        g_(conv_family_geometry(o)) {
    const auto& ch = g_.decoder_channels;
    auto act = [] { return nn::LeakyReLU(nn::LeakyReLUOptions().negative_slope(0.2)); };
    nn::Sequential net(nn::ConvTranspose2d(nn::ConvTranspose2dOptions(latent_, ch[0], {g_.start_h, g_.start_w})));
    for (size_t i = 1; i < ch.size(); ++i) {
      net->push_back(act());
      net->push_back(nn::ConvTranspose2d(nn::ConvTranspose2dOptions(ch[i - 1], ch[i], 4).stride(2).padding(1)));
    }
    net_ = register_module("net", net);
  }
  torch::Tensor params(const torch::Tensor& z) override {
    auto lead = z.sizes().vec();
    lead.pop_back();
    const auto children = net_->children();
    // The first layer: a 1x1 input, so out[n, y, x, c] = sum_d z[n, d] W[d, c, y, x] + b[c].
    auto* first = children.front()->as<nn::ConvTranspose2d>();
    const int64_t c0 = g_.decoder_channels[0];
    auto w = first->weight.permute({0, 2, 3, 1}).reshape({latent_, g_.start_h * g_.start_w * c0});
    auto h = torch::addmm(first->bias.repeat({g_.start_h * g_.start_w}), z.reshape({-1, latent_}), w)
                 .view({-1, g_.start_h, g_.start_w, c0});  // [N, H, W, C]
    for (size_t i = 1; i < children.size(); ++i) {
      if (auto* convt = children[i]->as<nn::ConvTranspose2d>()) {
        h = transposed_conv_nhwc(h, *convt);
      } else if (auto* act = children[i]->as<nn::LeakyReLU>()) {
        h = torch::leaky_relu(h, act->options.negative_slope());
      } else {
        throw std::logic_error("ConvFamilyDecoder: unexpected layer " + children[i]->name());
      }
    }
    if (g_.canvas_h != g_.height || g_.canvas_w != g_.width)
      h = h.narrow(1, g_.top, g_.height).narrow(2, g_.left, g_.width);
    return params_layout(h, lead, outputs_, g_.channels);
  }

 private:
  int64_t latent_, outputs_;
  ConvFamilyGeometry g_;
  nn::Sequential net_{nullptr};
};

}  // namespace

int64_t NetworkOptions::pixels() const {
  int64_t p = 1;
  for (auto s : image_shape_) p *= s;
  return p;
}

namespace {
struct Architecture {
  std::function<std::shared_ptr<Encoder>(const NetworkOptions&)> encoder;
  std::function<std::shared_ptr<Decoder>(const NetworkOptions&)> decoder;
};
const Registry<Architecture>& architecture_registry() {
  static const auto registry =
      Registry<Architecture>("architecture")
          .add("mlp", {[](const NetworkOptions& o) { return std::make_shared<MlpEncoder>(o); },
                       [](const NetworkOptions& o) { return std::make_shared<MlpDecoder>(o); }})
          .add("conv", {[](const NetworkOptions& o) -> std::shared_ptr<Encoder> {
                          if (o.conv_reference()) return std::make_shared<ConvEncoder>(o);
                          return std::make_shared<ConvFamilyEncoder>(o);
                        },
                        [](const NetworkOptions& o) -> std::shared_ptr<Decoder> {
                          if (o.conv_reference()) return std::make_shared<ConvDecoder>(o);
                          return std::make_shared<ConvFamilyDecoder>(o);
                        }});
  return registry;
}
}  // namespace

std::vector<std::string> architectures() { return architecture_registry().names(); }

void NetworkOptions::validate() const {
  architecture_registry().at(architecture_);  // throws on an unknown name, listing the valid ones
  make_activation(activation_);               // likewise
  if (latent_dim_ < 1) throw OptionError("latent", "must be >= 1, got " + std::to_string(latent_dim_));
  for (auto w : hidden_)
    if (w < 1) throw OptionError("hidden", "widths must be >= 1, got " + std::to_string(w));
  if (outputs_per_value_ < 1)
    throw OptionError("outputs-per-value", "must be >= 1, got " + std::to_string(outputs_per_value_));
  if (conv_width_ < 1) throw OptionError("conv-width", "must be >= 1, got " + std::to_string(conv_width_));
  if (architecture_ != "conv") return;
  if (image_shape_.size() != 3)
    throw OptionError("architecture", "conv needs image data {C, H, W}; this data is flat, " +
                                          std::to_string(pixels()) + " values per example (use mlp for flat data)");
  const int64_t c = image_shape_[0], h = image_shape_[1], w = image_shape_[2];
  const auto shape = std::to_string(c) + "x" + std::to_string(h) + "x" + std::to_string(w);
  if (c < 1 || c > 4)
    throw OptionError("architecture", "conv takes images of 1 to 4 channels (grey, grey and alpha, RGB, RGBA: its "
                                      "last stage narrows to C M output channels and sample grids are PNG, which "
                                      "has at most 4), this data is " + shape + " (use mlp for other data)");
  if (h < 8 || w < 8)
    throw OptionError("architecture", "conv needs images of at least 8x8 (its stride-2 stages halve the side at "
                                      "least once, down to about 4x4), this data is " + shape +
                                      " (use mlp for smaller images)");
}

bool NetworkOptions::conv_reference() const {
  return architecture_ == "conv" && image_shape_ == std::vector<int64_t>{1, 28, 28};
}

ConvFamilyGeometry conv_family_geometry(const NetworkOptions& o) {
  TORCH_CHECK(o.image_shape().size() == 3, "conv_family_geometry: images {C, H, W} only");
  ConvFamilyGeometry g{};
  g.channels = o.image_shape()[0];
  g.height = o.image_shape()[1];
  g.width = o.image_shape()[2];
  // n >= 1 with the start side max(H, W) / 2^n nearest 4 in ratio: one more stage while the
  // side is above 4 sqrt(2) 2^n, i.e. side^2 > 32 4^n.
  const int64_t side = std::max(g.height, g.width);
  g.stages = 1;
  while (side * side > (int64_t{32} << (2 * g.stages))) ++g.stages;
  const int64_t scale = int64_t{1} << g.stages;
  g.start_h = (g.height + scale - 1) / scale;
  g.start_w = (g.width + scale - 1) / scale;
  g.canvas_h = g.start_h * scale;
  g.canvas_w = g.start_w * scale;
  g.top = (g.canvas_h - g.height) / 2;
  g.left = (g.canvas_w - g.width) / 2;
  const int64_t w = o.conv_width();
  g.decoder_channels = {8 * w};
  for (int64_t i = 1; i <= g.stages; ++i)
    g.decoder_channels.push_back(i == g.stages ? g.channels * o.outputs_per_value() : std::max<int64_t>(1, (8 * w) >> i));
  g.encoder_channels = {g.channels};
  for (int64_t i = 0; i < g.stages; ++i) g.encoder_channels.push_back(w << std::min<int64_t>(i, 3));
  return g;
}

double network_parameters(const NetworkOptions& o) {
  o.validate();
  // Weights and biases of a layer with `in` inputs per output (fan-in) and `out` outputs.
  auto layer = [](int64_t in, int64_t out) { return (static_cast<double>(in) + 1) * static_cast<double>(out); };
  const int64_t d = o.latent_dim(), m = o.outputs_per_value();
  double n = 0;
  if (o.architecture() == "mlp") {
    int64_t in = o.pixels();
    for (auto h : o.hidden()) n += layer(in, h), in = h;
    n += layer(in, 2 * d);
    in = d;
    for (auto h = o.hidden().rbegin(); h != o.hidden().rend(); ++h) n += layer(in, *h), in = *h;
    return n + layer(in, m * o.pixels());
  }
  if (o.conv_reference()) {
    n += layer(1 * 25, 32) + layer(32 * 25, 64) + layer(64 * 25, 128) + layer(2048, 2 * d);
    return n + layer(d * 16, 512) + layer(512 * 9, 256) + layer(256 * 16, 128) + layer(128 * 16, m);
  }
  const auto g = conv_family_geometry(o);
  for (size_t i = 1; i < g.encoder_channels.size(); ++i) n += layer(g.encoder_channels[i - 1] * 16, g.encoder_channels[i]);
  n += layer(g.encoder_channels.back() * g.start_h * g.start_w, 2 * d);
  n += layer(d * g.start_h * g.start_w, g.decoder_channels[0]);
  for (size_t i = 1; i < g.decoder_channels.size(); ++i) n += layer(g.decoder_channels[i - 1] * 16, g.decoder_channels[i]);
  return n;
}

std::shared_ptr<Encoder> make_encoder(const NetworkOptions& options) {
  options.validate();
  return architecture_registry().at(options.architecture()).encoder(options);
}

std::shared_ptr<Decoder> make_decoder(const NetworkOptions& options) {
  options.validate();
  return architecture_registry().at(options.architecture()).decoder(options);
}

namespace {

// log p(x|l) = sum_p x l - softplus(l), its gradient x - sigmoid(l) in one expression, with
// the slices of one leading dimension (the longest) split over the process's threads
// (common/parallel.h). For float32 CPU logits whose shape is the broadcast shape; x is data
// (no gradient).
struct BernoulliLogLikelihood : torch::autograd::Function<BernoulliLogLikelihood> {
  // Slice [b, b + n) of logits' dimension `dim`, and the part of x broadcast against it.
  static std::pair<torch::Tensor, torch::Tensor> slices(const torch::Tensor& logits, const torch::Tensor& x,
                                                        int64_t dim, int64_t b, int64_t n) {
    const int64_t xdim = dim - (logits.dim() - x.dim());
    const bool broadcast = xdim < 0 || x.size(xdim) == 1;
    return {logits.narrow(dim, b, n), broadcast ? x : x.narrow(xdim, b, n)};
  }

  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& logits,
                               const torch::Tensor& x, int64_t dim, int64_t parts) {
    ctx->save_for_backward({logits, x});
    ctx->saved_data["dim"] = dim;
    ctx->saved_data["parts"] = parts;
    auto sizes = logits.sizes().vec();
    sizes.pop_back();
    auto out = torch::empty(sizes, logits.options());
    const int64_t rows = logits.size(dim);
    parallel_run(static_cast<int>(parts), [&](int i) {
      torch::NoGradGuard no_grad;
      const int64_t b = rows * i / parts, n = rows * (i + 1) / parts - b;
      const auto [l, xs] = slices(logits, x, dim, b, n);
      out.narrow(dim, b, n).copy_((l * xs).sum(-1) - at::softplus(l).sum(-1));
    });
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const auto& logits = saved[0];
    const auto& x = saved[1];
    const int64_t dim = ctx->saved_data["dim"].toInt(), parts = ctx->saved_data["parts"].toInt();
    const int64_t rows = logits.size(dim);
    const auto g = grad[0].unsqueeze(-1);
    auto dl = torch::empty(logits.sizes(), logits.options());
    parallel_run(static_cast<int>(parts), [&](int i) {
      torch::NoGradGuard no_grad;
      const int64_t b = rows * i / parts, n = rows * (i + 1) / parts - b;
      const auto [l, xs] = slices(logits, x, dim, b, n);
      auto part = dl.narrow(dim, b, n);
      at::sigmoid_out(part, l);
      at::sub_out(part, xs, part).mul_(g.narrow(dim, b, n));  // (x - sigmoid(l)) g
    });
    return {dl, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor bernoulli_log_likelihood(const torch::Tensor& logits, const torch::Tensor& x) {
  // sum_p x l - softplus(l): the same function as -BCE-with-logits (also for grey x), in
  // two reductions instead of an elementwise loss tensor the size of the broadcast;
  // 1.7x faster on IWAE_1000 chunks (bench/results/speed/notes-20261123.md). Float32
  // on the CPU takes the fused form above, split over the threads (threads_for).
  const bool fused = logits.device().is_cpu() && logits.scalar_type() == torch::kFloat &&
                     x.scalar_type() == torch::kFloat && !x.requires_grad() && logits.dim() >= 2 &&
                     x.dim() >= 1 && at::infer_size(logits.sizes(), x.sizes()) == logits.sizes().vec();
  if (!fused) return (logits * x).sum(-1) - at::softplus(logits).sum(-1);
  int64_t dim = 0;
  for (int64_t d = 1; d + 1 < logits.dim(); ++d)
    if (logits.size(d) > logits.size(dim)) dim = d;
  const int64_t parts = std::min<int64_t>(threads_for(logits.numel()), logits.size(dim));
  return BernoulliLogLikelihood::apply(logits, x, dim, parts);
}

}  // namespace vae_ebm
