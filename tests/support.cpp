// Shared test support (see support.h).
#include <torch/torch.h>

#include "tests/support.h"

#include "apps/command.h"
#include "data/hdf5_io.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <system_error>
#include <vector>

namespace vae_ebm::test {

const cli::Command& command(const std::string& name) {
  if (const auto* c = cli::find_command(name)) return *c;
  throw std::logic_error("no command " + name);
}

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

void write_two_class_data(const std::string& path, uint64_t seed, int64_t train, int64_t validation, int64_t test) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  H5Writer writer(path);
  for (const auto& [name, n] : std::vector<std::pair<std::string, int64_t>>{{"train", train}, {"validation", validation}, {"test", test}}) {
    auto labels = torch::randint(0, 2, {n}, gen, torch::kLong);
    auto left = (torch::arange(16) < 8).to(torch::kFloat).view({1, 1, 16});
    auto half = torch::where(labels.view({n, 1, 1}) == 0, left, 1 - left);
    writer.write(name, torch::bernoulli(0.1 + 0.8 * half.expand({n, 12, 16}), gen));
    writer.write(name + "_labels", labels);
  }
  writer.close();
}

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t n = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n);
  ::close(fd);
  return ntohs(a.sin_port);
}

std::string shell_output(const std::string& script) {
  FILE* p = popen(("bash -c '" + script + "'").c_str(), "r");
  if (!p) throw std::runtime_error("popen failed");
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  pclose(p);
  return out;
}

std::string launch_ranks(const std::string& binary, int world, const std::string& args, const std::string& log) {
  const int port = free_port();
  std::string script;
  for (int r = 0; r < world; ++r)
    script += "RANK=" + std::to_string(r) + " LOCAL_RANK=" + std::to_string(r) + " WORLD_SIZE=" +
              std::to_string(world) + " MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(port) + " " + binary +
              args + " > " + log + ".rank" + std::to_string(r) + " 2>&1 & p" + std::to_string(r) + "=$!; ";
  for (int r = 0; r < world; ++r) script += "wait $p" + std::to_string(r) + "; echo -n \"$? \"; ";
  return shell_output(script);
}

}  // namespace vae_ebm::test
