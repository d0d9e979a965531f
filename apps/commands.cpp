// The table of commands, the usage text made from it, `vae-ebm --version`, and the dispatch.
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>

#include <boost/version.hpp>
#include <torch/version.h>

#include "apps/cli.h"
#include "apps/command.h"
#include "common/blas_kernel.h"
#include "common/error.h"

namespace vae_ebm::cli {

// Each command's file returns its entry (apps/train.cpp, evaluate.cpp, ...).
Command train_command();
Command fit_prior_command();
Command evaluate_command();
Command sample_command();
Command export_command();
Command train_classifier_command();
Command report_command();

const std::vector<Command>& command_table() {
  static const std::vector<Command> table = {train_command(),  fit_prior_command(), evaluate_command(),
                                             sample_command(), export_command(),    train_classifier_command(),
                                             report_command()};
  return table;
}

const Command* find_command(const std::string& name) {
  for (const auto& c : command_table())
    if (c.name == name) return &c;
  return nullptr;
}

std::string usage_text() {
  std::string out =
      "usage: vae-ebm COMMAND [flags]   (vae-ebm COMMAND --help for its flags)\n"
      "       vae-ebm --version [--blas-kernel K]   versions and the BLAS kernel in use\n"
      "\n"
      "commands:\n";
  for (const auto& command : command_table()) {
    std::string name = "  " + command.name;
    name.resize(std::max<size_t>(name.size() + 2, 20), ' ');
    out += name + command.summary + "\n";
  }
  return out;
}

namespace {

// `vae-ebm --version [--blas-kernel K]`: the versions, and the BLAS kernel the commands
// would compute with.
int print_version(const std::vector<std::string>& args) {
  if (args.size() != 1 && !(args.size() == 3 && args[1] == "--blas-kernel"))
    throw UsageError("--version takes only --blas-kernel K");
  choose_blas_kernel(args.size() == 3 ? args[2] : CommonConfig().blas_kernel);
  std::printf("vae-ebm %s\nLibTorch %d.%d.%d, Boost %s\n%s\nCPU: %s\n", VAE_EBM_VERSION, TORCH_VERSION_MAJOR,
              TORCH_VERSION_MINOR, TORCH_VERSION_PATCH, BOOST_LIB_VERSION, blas_kernel_line().c_str(),
              blas::detect_cpu().describe().c_str());
  return 0;
}

}  // namespace

int main_entry(int argc, char** argv) {
  keep_command_line(argc, argv);
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::printf("%s", usage_text().c_str());
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "--version") {
    try {
      return print_version(args);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "vae-ebm --version: error: %s\n", e.what());
      return 2;
    }
  }
  const std::string name = args[0];
  args.erase(args.begin());
  const Command* command = find_command(name);
  if (!command) {
    std::fprintf(stderr, "vae-ebm: unknown command '%s'\n\n%s", name.c_str(), usage_text().c_str());
    return 2;
  }
  try {
    return command->run(args);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "vae-ebm %s: error: %s\n(see vae-ebm %s --help)\n", name.c_str(), e.what(), name.c_str());
    return 2;
  } catch (const OptionError& e) {  // found once the run had started (an option that does not fit the data)
    std::fprintf(stderr, "vae-ebm %s: error: --%s: %s\n(see vae-ebm %s --help)\n", name.c_str(), e.option.c_str(),
                 e.detail.c_str(), name.c_str());
    return 2;
  } catch (const std::exception& e) {
    std::string what = without_backtrace(e.what());
    // An allocation that failed: what was asked for is too large for this machine.
    if (what.find("can't allocate memory") != std::string::npos)
      what += " (the sizes asked for need more memory than this machine has: lower them, e.g. --log-z-samples, "
              "--quality-samples, --batch-size or the network widths)";
    std::fprintf(stderr, "vae-ebm %s: error: %s\n", name.c_str(), what.c_str());
    return 1;
  }
}

}  // namespace vae_ebm::cli
