#pragma once
// User-facing errors raised by the data layer: bad files, bad shapes, bad names.
#include <stdexcept>
#include <string>

#include "common/error.h"

namespace vae_ebm {

// Thrown for every problem with user input that touches disk: the message names the
// file (or data set), what was expected and what was found.
struct DataError : UserError {
  using UserError::UserError;
};

}  // namespace vae_ebm
