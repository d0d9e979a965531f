// The config structs' derived values (apps/cli.h): the networks, the prior and the objective a
// TrainConfig names, and the comma-separated widths of its flags.
#include <torch/torch.h>

#include "apps/cli.h"

#include <algorithm>

namespace vae_ebm::cli {

std::string widths_text(const std::vector<int64_t>& widths) { return option_text(widths); }

std::vector<int64_t> parse_widths(const std::string& text, const std::string& flag) {
  return as_usage([&] { return option_widths(flag, text); });
}

NetworkOptions TrainConfig::network_options(const std::vector<int64_t>& image_shape) const {
  return NetworkOptions()
      .architecture(architecture)
      .hidden(parse_widths(hidden, "hidden"))
      .activation(activation)
      .conv_width(conv_width)
      .latent_dim(latent)
      .image_shape(image_shape);
}

PriorOptions TrainConfig::prior_options() const { return PriorOptions(prior, latent).values(prior_values); }

std::string TrainConfig::prior_flags_text() const {
  std::string out;
  for (const auto& option : all_prior_options()) {
    if (std::find(option.kinds.begin(), option.kinds.end(), prior) == option.kinds.end()) continue;
    const auto* given = prior_values.find(option.spec.name);
    out += " --" + option.spec.name + " " + (given ? *given : option.spec.default_text);
  }
  return out;
}

std::string TrainConfig::objective_name() const { return objective.empty() ? default_objective(prior) : objective; }

}  // namespace vae_ebm::cli
