// libFuzzer harness: `vae-ebm train --config FILE`, the config-file path of the command line
// (apps/cli.cpp parse_train, apps/flags.cpp, Boost.Program_options' config-file reader), with
// the input as the file's contents; then what the train command derives from a parsed config
// before it builds anything (hidden widths, prior and training options, their checks).
// A UsageError (or any std::exception) is the expected answer to a bad file; a crash or an ASan
// report is a bug.
#include <torch/torch.h>

#include <cstdint>
#include <cstdlib>
#include <exception>

#include "apps/cli.h"
#include "fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  torch::set_num_threads(1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = vae_ebm::fuzz::temp_path("config", ".ini");
  vae_ebm::fuzz::write_input(path, data, size);
  vae_ebm::cli::TrainConfig config;
  try {
    if (!vae_ebm::cli::parse_train({"--config", path}, config)) return 0;
  } catch (const std::exception& e) {
    vae_ebm::fuzz::refused(e);
    return 0;
  }
  try {
    config.network_options({1, 28, 28}).validate();
    (void)config.prior_options();
    config.train.validate();
  } catch (const std::exception& e) {
    vae_ebm::fuzz::refused(e);
  }
  return 0;
}
