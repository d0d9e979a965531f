#include <torch/torch.h>

#include "apps/flags.h"

#include <torch/version.h>

#include <boost/version.hpp>

#include <algorithm>
#include <iostream>
#include <cctype>
#include <cerrno>
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <map>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "apps/run_support.h"
#include "common/registry.h"
#include "data/run_config.h"
#include "estimators/samplers.h"
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
       "(OpenBLAS's own choice) or a name (SkylakeX, Haswell, Zen, ...)")
      ("allow-large-work", po::value<bool>()->default_value(false)->implicit_value(true),
       "run work sizes beyond their stated bounds (--epochs over 100000, --log-z-samples over 1e8, ...: "
       "see README, \"Work sizes\"); without it such a value is refused as a likely typo");
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


// Flags whose value multiplies a command's work, and the largest value a command takes without
// --allow-large-work. Each bound is 100-1,000 times what a study here has used: beyond it a value
// is more likely a typo (1e12 for 1e5) than a plan, and it would start hours of work without a
// word (issue 26, finding 11).
const std::vector<WorkBound>& work_bounds() {
  static const std::vector<WorkBound> bounds = {
      {"epochs", 100'000},
      {"samples", 100'000},
      {"eval-samples", 100'000},
      {"log-z-samples", 100'000'000},
      {"base-samples", 1'000'000},
      {"mcmc-steps", 100'000},
      {"negatives", 1'000'000},
      {"buffer-size", 10'000'000},
      {"proposal-flow-steps", 1'000'000},
      {"proposal-anneal", 1'000},
      {"refine-steps", 10'000},
      {"flow-layers", 256},
      {"flow-steps", 1'000'000},
      {"flow-refine-steps", 100'000},
      {"ais-chains", 1'000'000},
      {"ais-temperatures", 1'000'000},
      {"validation-ais-chains", 1'000'000},
      {"validation-ais-temperatures", 1'000'000},
      {"quality-samples", 1'000'000},
      {"count", 100'000},
      {"sampler-steps", 100'000},
      {"sampler-flow-steps", 100'000},
      {"hmc-trajectories", 100'000},
      {"hmc-leapfrog", 10'000},
      {"sir-candidates", 1'000'000},
      {"mog-components", 10'000}};
  return bounds;
}

namespace {
// A numeric flag's value, whatever type it was declared with (NaN for text that is not a number).
double numeric_value(const boost::any& value) {
  if (const auto* v = boost::any_cast<int>(&value)) return *v;
  if (const auto* v = boost::any_cast<int64_t>(&value)) return static_cast<double>(*v);
  if (const auto* v = boost::any_cast<uint64_t>(&value)) return static_cast<double>(*v);
  if (const auto* v = boost::any_cast<double>(&value)) return *v;
  return std::nan("");
}

void check_work_sizes(const po::variables_map& vm) {
  if (vm.count("allow-large-work") && vm["allow-large-work"].as<bool>()) return;
  for (const auto& bound : work_bounds()) {
    if (!vm.count(bound.flag) || vm[bound.flag].defaulted()) continue;
    const double value = numeric_value(vm[bound.flag].value());
    if (std::isfinite(value) && value > static_cast<double>(bound.most))
      throw UsageError("--" + bound.flag + " " +
                       (value < 9e18 ? std::to_string(static_cast<int64_t>(value)) : shortest(value)) + " is beyond " + std::to_string(bound.most) +
                       ", the largest work size run without asking (its work grows with it, and a value this "
                       "large is more often a typo than a plan): give --allow-large-work to run it anyway");
  }
}
}  // namespace

void notify_all(po::variables_map& vm) {
  // A subnormal value (below 2.2e-308 in magnitude) of any real flag has lost its precision and
  // is no rate, size or scale anyone means: refused by name, with the flag's own spelling.
  for (const auto& [name, value] : vm)
    if (const auto* v = boost::any_cast<double>(&value.value()); v && std::fpclassify(*v) == FP_SUBNORMAL)
      throw UsageError("--" + name + " " + shortest(*v) + " is subnormal (below " + shortest(DBL_MIN) +
                       " in magnitude): give 0 or a normal number");
  check_work_sizes(vm);
  try {
    po::notify(vm);
  } catch (po::error& e) {
    throw UsageError(po_error_text(e));
  }
}



// Renders a parsed value in config-file syntax.
std::string value_text(const boost::any& v) {
  if (auto p = boost::any_cast<std::string>(&v)) return *p;
  if (auto p = boost::any_cast<int64_t>(&v)) return std::to_string(*p);
  if (auto p = boost::any_cast<uint64_t>(&v)) return std::to_string(*p);
  if (auto p = boost::any_cast<int>(&v)) return std::to_string(*p);
  if (auto p = boost::any_cast<bool>(&v)) return *p ? "true" : "false";
  if (auto p = boost::any_cast<double>(&v)) return shortest(*p);
  return "?";
}

Resolved resolve(const po::options_description& desc, const po::variables_map& vm,
                 const std::vector<std::string>& skip) {
  Resolved out;
  for (const auto& opt : desc.options()) {
    const auto& name = opt->long_name();
    if (std::find(skip.begin(), skip.end(), name) != skip.end()) continue;
    if (vm.count(name)) out.emplace_back(name, value_text(vm[name].value()));
  }
  return out;
}

void set_resolved(Resolved& r, const std::string& key, const std::string& value) {
  for (auto& kv : r)
    if (kv.first == key) {
      kv.second = value;
      return;
    }
  r.emplace_back(key, value);
}

std::string render(const Resolved& r, const std::string& command) {
  RunConfig config;
  config.add_comments({std::string("vae-ebm ") + VAE_EBM_VERSION + " resolved configuration (" + command + ")",
                       "LibTorch " + std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) +
                           "." + std::to_string(TORCH_VERSION_PATCH) + ", Boost " + BOOST_LIB_VERSION,
                       "Repeat this run with: vae-ebm train --config THIS_FILE --run-dir NEW_DIR"});
  for (const auto& [k, v] : r) config.set(k, v);
  return config.text();
}



// Keys that only the command line may give: a config file naming the run to resume (or another
// config file) would bypass the checks that --resume makes, build the model from the file's flags
// and meet the run's checkpoints with it.
namespace {
const std::vector<std::string> kCommandLineOnly = {"resume", "config"};
}  // namespace

void store_config_file(const std::string& path, const po::options_description& desc, po::variables_map& vm,
                       const std::vector<std::string>& keep_only) {
  if (!std::filesystem::is_regular_file(path)) throw UsageError("config file '" + path + "' is not a file");
  std::ifstream in(path);
  if (!in) throw UsageError("cannot read config file '" + path + "'");
  try {
    // With keep_only (a parent's config read by fit-prior) the keys this command does not
    // know are dropped rather than refused.
    auto parsed = po::parse_config_file(in, desc, /*allow_unregistered=*/!keep_only.empty());
    if (keep_only.empty())
      for (const auto& o : parsed.options)
        if (std::find(kCommandLineOnly.begin(), kCommandLineOnly.end(), o.string_key) != kCommandLineOnly.end())
          throw UsageError("config file '" + path + "' sets '" + o.string_key + "', which only the command line may give" +
                           (o.string_key == "resume" ? ": vae-ebm train --resume RUN_DIR (the run's own config.ini says the rest)"
                                                     : ""));
    if (!keep_only.empty()) {
      std::vector<po::option> kept;
      for (auto& o : parsed.options)
        if (std::find(keep_only.begin(), keep_only.end(), o.string_key) != keep_only.end()) kept.push_back(o);
      parsed.options = kept;
    }
    po::store(parsed, vm);
  } catch (po::error& e) {
    throw UsageError("config file '" + path + "': " + po_error_text(e));
  }
}

void add_run_and_checkpoint(po::options_description& d, std::string& run_dir, std::string& checkpoint) {
  d.add_options()
      ("help,h", "show this help")
      ("run-dir", po::value(&run_dir), "the run directory (positional)")
      ("checkpoint", po::value(&checkpoint)->default_value(checkpoint), "best, latest, or a checkpoint path");
}
static void require_run_dir(const po::variables_map& vm, const std::string& command) {
  if (!vm.count("run-dir")) throw UsageError(command + " needs a run directory: vae-ebm " + command + " RUN_DIR");
}
// The commands that read a run (evaluate, sample, export): RUN_DIR as the positional argument,
// the common flags, then a check that RUN_DIR was given. False when --help was shown.
bool parse_run_command(const std::vector<std::string>& args, po::options_description& d, CommonConfig& common,
                       const std::string& command, const std::string& usage) {
  add_common(d, common);
  po::positional_options_description pos;
  pos.add("run-dir", 1);
  po::variables_map vm;
  if (!parse(args, d, pos, vm, usage)) return false;
  notify_all(vm);
  require_run_dir(vm, command);
  return true;
}

// --sampler and its options (sample and evaluate): estimators/samplers.h.
void add_option_flags(po::options_description& d, const std::vector<OptionSpec>& specs,
                      const std::function<std::string(const OptionSpec&)>& help, const OptionKeeper& keep) {
  for (const auto& spec : specs) {
    const auto name = spec.name;
    const auto text = help(spec);
    switch (spec.type) {
      case OptionType::integer:
        d.add_options()(name.c_str(),
                        po::value<int64_t>()
                            ->default_value(option_integer(name, spec.default_text))
                            ->notifier([keep, name](int64_t v) { keep(name, option_text(v)); }),
                        text.c_str());
        break;
      case OptionType::real:
        d.add_options()(name.c_str(),
                        po::value<double>()
                            ->default_value(option_real(name, spec.default_text), spec.default_text)
                            ->notifier([keep, name](double v) { keep(name, option_text(v)); }),
                        text.c_str());
        break;
      case OptionType::flag:
        d.add_options()(name.c_str(),
                        po::value<bool>()
                            ->default_value(option_flag(name, spec.default_text))
                            ->implicit_value(true)
                            ->notifier([keep, name](bool v) { keep(name, option_text(v)); }),
                        text.c_str());
        break;
      case OptionType::text:
        d.add_options()(name.c_str(),
                        po::value<std::string>()->default_value(spec.default_text)->notifier(
                            [keep, name](const std::string& v) { keep(name, v); }),
                        text.c_str());
        break;
    }
  }
}

void add_sampler_flags(po::options_description& d, std::string& sampler, SamplerOptions& o) {
  std::string names;
  for (const auto& name : sampler_names())
    names += "\n  " + name + (name == default_sampler() ? " (default)" : "") + ": " + sampler_registry().at(name).help;
  d.add_options()
      ("sampler", po::value(&sampler)->default_value(sampler),
       ("ebm: how prior samples are drawn (all: each sampler in turn):" + names +
        "\nexact priors (gaussian, mog, flow) are sampled exactly").c_str());
  // The samplers' options as estimators/samplers.cpp declares them, set into `o` as given.
  add_option_flags(
      d, sampler_option_set().specs(), [](const OptionSpec& spec) { return spec.help; },
      [&o](const std::string& name, const std::string& text) { sampler_option_set().set(o, name, text); });
}
void check_sampler(const std::string& sampler, const SamplerOptions& o) {
  auto names = sampler_names();
  names.push_back("all");
  check_choice("--sampler", sampler, names);
  as_usage([&] { o.validate(); }, "");
}

}  // namespace vae_ebm::cli
