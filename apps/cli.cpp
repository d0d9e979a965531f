// The config structs' derived values (apps/cli.h): the networks, the prior and the objective a
// TrainConfig names, and the comma-separated widths of its flags.
#include <torch/torch.h>

#include "apps/cli.h"

#include <sstream>

namespace vae_ebm::cli {

std::string widths_text(const std::vector<int64_t>& widths) {
  std::string out;
  for (auto w : widths) out += (out.empty() ? "" : ",") + std::to_string(w);
  return out;
}

std::vector<int64_t> parse_widths(const std::string& text, const std::string& flag) {
  std::vector<int64_t> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    try {
      size_t used = 0;
      auto v = std::stoll(item, &used);
      if (used != item.size() || v < 1) throw std::invalid_argument(item);
      out.push_back(v);
    } catch (const std::exception&) {
      throw UsageError("--" + flag + " expects comma-separated positive integers, got '" + text + "'");
    }
  }
  if (out.empty())
    throw UsageError("--" + flag + " expects comma-separated positive integers (at least one), got '" + text + "'");
  return out;
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

PriorOptions TrainConfig::prior_options() const {
  return PriorOptions(prior, latent)
      .mog_components(mog_components)
      .energy_hidden(parse_widths(energy_hidden, "energy-hidden"))
      .energy_slope(energy_slope)
      .flow_layers(flow_layers)
      .flow_hidden(flow_hidden);
}

std::string TrainConfig::objective_name() const { return objective.empty() ? default_objective(prior) : objective; }

}  // namespace vae_ebm::cli
