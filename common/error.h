#pragma once
// The one family of errors a user causes and can fix: a bad option value, a bad name, bad
// input data. Internal invariants (a broken contract between parts of the program) use
// TORCH_CHECK or std::logic_error instead, and the command line reports the two apart.
#include <stdexcept>
#include <string>
#include <utility>

namespace vae_ebm {

struct UserError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// A bad option value. `option` is the option's name as the library knows it, the field of its
// options struct with '-' for '_' ("batch-size", "base-samples"); the message names the value
// and what was expected, without a flag's spelling: only apps/ turns `option` into a flag.
struct OptionError : UserError {
  OptionError(std::string option_name, const std::string& message)
      : UserError(option_name + ": " + message), option(std::move(option_name)), detail(message) {}
  std::string option;
  std::string detail;  // the message without the option's name
};

}  // namespace vae_ebm
