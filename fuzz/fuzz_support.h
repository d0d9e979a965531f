#pragma once
// What the harnesses share: the parsers under test take a path, so each input is written to one
// fixed file per process (in /dev/shm when there is one: no disk writes at thousands of inputs a
// second), removed when the process exits.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

namespace vae_ebm::fuzz {

inline std::string& temp_path_slot() {
  static std::string path;
  return path;
}

// "/dev/shm/vae-ebm-fuzz-<target>-<pid><suffix>", made once per process.
inline const std::string& temp_path(const std::string& target, const std::string& suffix = "") {
  std::string& path = temp_path_slot();
  if (path.empty()) {
    const char* dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    path = std::string(dir) + "/vae-ebm-fuzz-" + target + "-" + std::to_string(getpid()) + suffix;
    std::atexit([] { std::remove(temp_path_slot().c_str()); });
  }
  return path;
}

// Writes the input as a new file (a new inode: libhdf5 recognises a file it still holds open by
// device and inode, and an object it leaked on the previous input must not make it reuse that
// input's cached metadata); aborts if it cannot (a harness fault, not a finding).
inline void write_input(const std::string& path, const uint8_t* data, size_t size) {
  std::remove(path.c_str());
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr || (size > 0 && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
    std::perror(path.c_str());
    std::abort();
  }
}

// With VAE_EBM_FUZZ_VERBOSE set, prints the error an input was refused with (to check that a
// seed is accepted, or why not: `VAE_EBM_FUZZ_VERBOSE=1 build-fuzz/fuzz/fuzz_checkpoint FILE`).
inline void refused(const std::exception& e) {
  static const bool verbose = std::getenv("VAE_EBM_FUZZ_VERBOSE") != nullptr;
  if (verbose) std::fprintf(stderr, "refused: %s\n", e.what());
}

}  // namespace vae_ebm::fuzz
