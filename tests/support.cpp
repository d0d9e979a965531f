// Shared test support (see support.h).
#include <torch/torch.h>

#include "tests/support.h"

#include "data/hdf5_io.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <system_error>
#include <vector>

namespace vae_ebm::test {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base != nullptr && *base != '\0' ? base : "/tmp") +
                     "/vae-ebm-test-XXXXXX";
  std::vector<char> buffer(tmpl.begin(), tmpl.end());
  buffer.push_back('\0');
  if (::mkdtemp(buffer.data()) == nullptr) {
    throw std::runtime_error("TempDir: mkdtemp(" + tmpl + ") failed: " + std::strerror(errno));
  }
  path_ = buffer.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);  // best effort: never throw from a destructor
}

void write_tiny_binary_data(const std::string& path, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  H5Writer writer(path);
  for (const auto& [name, n] : std::vector<std::pair<std::string, int64_t>>{{"train", 32}, {"validation", 8}, {"test", 8}})
    writer.write(name, torch::bernoulli(torch::full({n, 3, 4}, 0.4), gen));
  writer.close();
}

}  // namespace vae_ebm::test
