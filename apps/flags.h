#pragma once
// The pieces every command's flags are made of (Boost.Program_options, used in apps/ only):
// the flags all commands share, a double flag shown as written, parsing into UsageError.
// A new command declares its flags with these in its own file.
#include <boost/program_options.hpp>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "apps/cli.h"
#include "common/options.h"
#include "common/text.h"

namespace boost {
// Unsigned flags (the seeds): Boost's lexical_cast reads "-1" as 2^64 - 1 for an unsigned target,
// so a negative seed wrapped silently. Found by argument-dependent lookup (boost::any), this
// overload reads a whole non-negative decimal integer in range or refuses the value.
void validate(boost::any& v, const std::vector<std::string>& values, uint64_t*, int);
}  // namespace boost

namespace vae_ebm::cli {

namespace po = boost::program_options;

// --data-dir, --device, --threads, --blas-kernel.
void add_common(po::options_description& d, CommonConfig& c);
// --nproc (into common.nproc): the commands that can run data-parallel.
void add_nproc(po::options_description& d, CommonConfig& c);
// A double flag's default, shown as written.
po::typed_value<double>* real(double* target, double value);
// Parses a command line into vm; false when --help was given (help printed). Bad flags throw
// UsageError.
bool parse(const std::vector<std::string>& args, const po::options_description& desc,
           const po::positional_options_description& positional, po::variables_map& vm, const std::string& usage);
// Boost's message for a parse error, safe whatever the input holds: a '%' written in by the
// user shows as '?' (Boost's placeholder substitution would otherwise loop for ever).
std::string po_error_text(po::error& e);
// A flag whose value multiplies a command's work, and the most it takes without --allow-large-work.
struct WorkBound {
  std::string flag;
  int64_t most;
};
const std::vector<WorkBound>& work_bounds();
// po::notify, with Boost's errors as UsageError; refuses subnormal reals and, without
// --allow-large-work, work sizes beyond their bounds (work_bounds()).
void notify_all(po::variables_map& vm);
// A value that must be one of `valid` (a registry's names); UsageError naming flag and value.
void check_choice(const std::string& flag, const std::string& value, const std::vector<std::string>& valid);

// A parsed value in config-file syntax.
std::string value_text(const boost::any& v);
// A command's resolved flags, in the order it declares them: what config.ini records.
using Resolved = std::vector<std::pair<std::string, std::string>>;
Resolved resolve(const po::options_description& desc, const po::variables_map& vm, const std::vector<std::string>& skip);
// Sets (or adds) one resolved flag.
void set_resolved(Resolved& r, const std::string& key, const std::string& value);
// config.ini's text (data/run_config.h) for these flags of `command`: a header of what wrote it.
std::string render(const Resolved& r, const std::string& command);
// Reads a config file into vm (earlier sources win). `resume` and `config` are refused in it;
// with keep_only (a parent's config.ini, read by fit-prior) only those keys are taken and the
// keys this command does not know are dropped rather than refused. UsageError naming the file.
void store_config_file(const std::string& path, const po::options_description& desc, po::variables_map& vm,
                       const std::vector<std::string>& keep_only = {});

// The commands that read a run (evaluate, sample, export): --help, RUN_DIR (positional) and
// --checkpoint; parse_run_command adds the common flags, parses, and requires RUN_DIR. False
// when --help was shown.
void add_run_and_checkpoint(po::options_description& d, std::string& run_dir, std::string& checkpoint);
bool parse_run_command(const std::vector<std::string>& args, po::options_description& d, CommonConfig& common,
                       const std::string& command, const std::string& usage);
// One flag per declared option (common/options.h), typed as declared, with the declaration's
// default; keep(name, text) receives each value the command line or a config file gives (and the
// defaults), numbers in their shortest form. help(spec) is the flag's help.
using OptionKeeper = std::function<void(const std::string& name, const std::string& text)>;
void add_option_flags(po::options_description& d, const std::vector<OptionSpec>& specs,
                      const std::function<std::string(const OptionSpec&)>& help, const OptionKeeper& keep);
// --sampler and its options (sample and evaluate: estimators/samplers.h), and their check.
void add_sampler_flags(po::options_description& d, std::string& sampler, SamplerOptions& o);
void check_sampler(const std::string& sampler, const SamplerOptions& o);

}  // namespace vae_ebm::cli
