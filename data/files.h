#pragma once
// Whole-file reads and crash-safe writes.
#include <string>

namespace vae_ebm {

// Writes `bytes` to `path` atomically: a temporary file in the same directory is
// written, flushed and fsync'ed, then renamed over `path` (and the directory fsync'ed).
// A crash leaves either the old file or the new one, never a mix.
void atomic_write(const std::string& path, const std::string& bytes);

// Reads a whole file; throws DataError naming the file if it cannot.
std::string read_file(const std::string& path);

bool file_exists(const std::string& path);

}  // namespace vae_ebm
