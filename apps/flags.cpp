#include <torch/torch.h>

#include "apps/flags.h"

#include <algorithm>
#include <iostream>
#include <cctype>
#include <cerrno>
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <map>
#include <sstream>

#include "common/registry.h"
#include "data/dataset.h"

namespace boost {
void validate(boost::any& v, const std::vector<std::string>& values, uint64_t*, int) {
  program_options::validators::check_first_occurrence(v);
  const std::string& s = program_options::validators::get_single_string(values);
  errno = 0;
  char* end = nullptr;
  const auto value = std::strtoull(s.c_str(), &end, 10);
  if (s.empty() || !std::isdigit(static_cast<unsigned char>(s[0])) || *end != '\0' || errno == ERANGE)
    throw program_options::invalid_option_value(s);
  v = boost::any(static_cast<uint64_t>(value));
}
}  // namespace boost

namespace vae_ebm::cli {

// A value that must be one of `valid` (a registry's names); UsageError naming flag and value.
void check_choice(const std::string& flag, const std::string& value, const std::vector<std::string>& valid) {
  if (std::find(valid.begin(), valid.end(), value) == valid.end())
    throw UsageError(flag + " must be one of " + join_names(valid) + ", got '" + value + "'");
}

void add_common(po::options_description& d, CommonConfig& c) {
  d.add_options()
      ("data-dir", po::value(&c.data_dir)->default_value(default_data_dir()),
       "data directory (scripts/setup.sh fills it; env VAE_EBM_DATA)")
      ("device", po::value(&c.device)->default_value(c.device), "cpu, cuda or cuda:N")
      ("threads", po::value(&c.threads)->default_value(default_threads_per_process()),
       "CPU threads, given to OpenBLAS (LibTorch's own pool stays at 1: measured fastest, see README)")
      ("blas-kernel", po::value(&c.blas_kernel)->default_value(c.blas_kernel),
       "OpenBLAS kernel: auto (the best this CPU supports, unless OPENBLAS_CORETYPE is set), keep "
       "(OpenBLAS's own choice) or a name (SkylakeX, Haswell, Zen, ...)");
}

void add_nproc(po::options_description& d, CommonConfig& c) {
  d.add_options()("nproc", po::value<std::string>()->notifier([&c](const std::string& v) { c.nproc = parse_nproc(v); }),
                  "start N processes on this machine that run this command data-parallel, as torchrun "
                  "--nproc_per_node N would (see README, \"Many processes, many machines\"); not under torchrun");
}

// A double flag's default, shown as written.
po::typed_value<double>* real(double* target, double value) {
  return po::value(target)->default_value(value, shortest(value));
}


namespace {
// Boost keeps an error's substitutions protected; a derived class may name them.
struct Substitutions : po::error_with_option_name {
  static std::map<std::string, std::string>& of(po::error_with_option_name& e) { return e.*(&Substitutions::m_substitutions); }
};
}  // namespace

// Boost writes the offending option, token, value or config line into its message by replacing
// each placeholder (%value%, %original_token%, %invalid_line%, ...) until none is left, so a text
// that holds a placeholder itself ("--latent %value%", a config line "%invalid_line%") makes
// what() loop for ever (found by fuzz/config.cpp). With no '%' in what is written in, every
// replacement removes one placeholder: the message shows those '%' as '?'.
std::string po_error_text(po::error& e) {
  if (auto* named = dynamic_cast<po::error_with_option_name*>(&e))
    for (auto& entry : Substitutions::of(*named)) std::replace(entry.second.begin(), entry.second.end(), '%', '?');
  return e.what();
}


static std::vector<const char*> argv_of(const std::vector<std::string>& args) {
  std::vector<const char*> argv{"vae-ebm"};
  for (const auto& a : args) argv.push_back(a.c_str());
  return argv;
}


// Parses a command line (and, if named, config files: earlier sources win).
// Returns false when --help was given (help printed).
bool parse(const std::vector<std::string>& args, const po::options_description& desc,
           const po::positional_options_description& positional, po::variables_map& vm,
           const std::string& usage) {
  try {
    auto argv = argv_of(args);
    // Boost guesses an abbreviated flag (--epoch for --epochs) unless told not to: an unknown
    // flag must be an error, not the nearest known one.
    po::store(po::command_line_parser(static_cast<int>(argv.size()), argv.data())
                  .options(desc)
                  .positional(positional)
                  .style(po::command_line_style::default_style & ~po::command_line_style::allow_guessing)
                  .run(),
              vm);
    if (vm.count("help")) {
      std::cout << usage << "\n\n" << desc << "\n";
      return false;
    }
  } catch (po::error& e) {
    throw UsageError(po_error_text(e));
  }
  return true;
}


void notify_all(po::variables_map& vm) {
  // A subnormal value (below 2.2e-308 in magnitude) of any real flag has lost its precision and
  // is no rate, size or scale anyone means: refused by name, with the flag's own spelling.
  for (const auto& [name, value] : vm)
    if (const auto* v = boost::any_cast<double>(&value.value()); v && std::fpclassify(*v) == FP_SUBNORMAL)
      throw UsageError("--" + name + " " + shortest(*v) + " is subnormal (below " + shortest(DBL_MIN) +
                       " in magnitude): give 0 or a normal number");
  try {
    po::notify(vm);
  } catch (po::error& e) {
    throw UsageError(po_error_text(e));
  }
}


}  // namespace vae_ebm::cli
