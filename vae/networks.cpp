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
    net_ = register_module("net", mlp(o.latent_dim(), reversed, o.pixels() * o.outputs_per_value(), o.activation()));
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

class ConvDecoder : public Decoder {
 public:
  explicit ConvDecoder(const NetworkOptions& o) : Decoder("ConvDecoder"), latent_(o.latent_dim()) {
    auto convt = [](int64_t in, int64_t out, int64_t k, int64_t s, int64_t p) {
      return nn::ConvTranspose2d(nn::ConvTranspose2dOptions(in, out, k).stride(s).padding(p));
    };
    auto act = [] { return nn::LeakyReLU(nn::LeakyReLUOptions().negative_slope(0.01)); };
    net_ = register_module("net", nn::Sequential(convt(o.latent_dim(), 512, 4, 1, 0), act(), convt(512, 256, 3, 2, 1),
                                                 act(), convt(256, 128, 4, 2, 1), act(), convt(128, 1, 4, 2, 1)));
  }
  // The layers run channels-last, each transposed convolution as one product over many
  // images (vae/conv_transpose.h); the modules stay as they were, and so do checkpoints.
  torch::Tensor params(const torch::Tensor& z) override {
    auto lead = z.sizes().vec();
    lead.pop_back();
    auto h = z.reshape({-1, 1, 1, latent_});  // [N, H, W, C]
    for (const auto& layer : net_->children()) {
      if (auto* convt = layer->as<nn::ConvTranspose2d>()) {
        const auto& o = convt->options;
        h = conv_transpose2d_nhwc(h, convt->weight, convt->bias, o.stride()->at(0),
                                  c10::get<torch::ExpandingArray<2>>(o.padding())->at(0));
      } else if (auto* act = layer->as<nn::LeakyReLU>()) {
        h = torch::leaky_relu(h, act->options.negative_slope());
      } else {
        throw std::logic_error("ConvDecoder: unexpected layer " + layer->name());
      }
    }
    lead.push_back(784);
    return h.reshape(lead);  // [N, 28, 28, 1]: the same order as the NCHW image
  }

 private:
  int64_t latent_;
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
          .add("conv", {[](const NetworkOptions& o) { return std::make_shared<ConvEncoder>(o); },
                        [](const NetworkOptions& o) { return std::make_shared<ConvDecoder>(o); }});
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
  if (architecture_ == "conv" && pixels() != 784)
    throw OptionError("architecture", "conv needs 28x28 single-channel images, this data has " +
                                          std::to_string(pixels()) + " values per example");
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
