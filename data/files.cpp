// Whole-file reads and crash-safe writes (see files.h).
#include "data/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <vector>

#include "data/error.h"

namespace vae_ebm {
namespace {

std::string errno_text(int err) { return std::strerror(err); }

std::string parent_dir(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Fault injection for the kill -9 tests: with VAE_EBM_KILL_IN_WRITE=N, the process kills
// itself (SIGKILL, as kill -9 would) halfway through the bytes of its Nth atomic_write.
bool kill_in_this_write() {
  static const long target = [] {
    const char* text = std::getenv("VAE_EBM_KILL_IN_WRITE");
    return text != nullptr ? std::strtol(text, nullptr, 10) : 0L;
  }();
  static long count = 0;
  return target > 0 && ++count == target;
}

}  // namespace

constexpr const char* kPartialSuffix = ".tmp-";  // atomic_write's temporaries: TARGET.tmp-XXXXXX

void atomic_write(const std::string& path, const std::string& bytes) {
  if (path.empty()) throw DataError("atomic_write: empty file name");
  std::string tmpl = path + kPartialSuffix + "XXXXXX";
  std::vector<char> name(tmpl.begin(), tmpl.end());
  name.push_back('\0');
  const int fd = ::mkstemp(name.data());
  if (fd < 0) {
    throw DataError("cannot write " + path + ": cannot create temporary file " + tmpl + ": " +
                    errno_text(errno));
  }
  const std::string tmp(name.data());
  auto fail = [&](const std::string& what, int err, bool close_fd) {
    if (close_fd) ::close(fd);
    ::unlink(tmp.c_str());
    throw DataError("cannot write " + path + ": " + what + ": " + errno_text(err));
  };

  // mkstemp creates the file 0600; give it the mode of the file it replaces, or the
  // usual 0644 for a new file.
  struct stat existing {};
  const mode_t mode = ::stat(path.c_str(), &existing) == 0 ? (existing.st_mode & 07777) : 0644;
  if (::fchmod(fd, mode) != 0) fail("fchmod " + tmp, errno, true);

  const char* data = bytes.data();
  size_t left = bytes.size();
  if (kill_in_this_write()) {
    if (::write(fd, data, left / 2) >= 0) ::fsync(fd);
    ::kill(::getpid(), SIGKILL);
  }
  while (left > 0) {
    const ssize_t n = ::write(fd, data, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("write " + tmp, errno, true);
    }
    data += n;
    left -= static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) fail("fsync " + tmp, errno, true);
  if (::close(fd) != 0) fail("close " + tmp, errno, false);
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("rename " + tmp, errno, false);

  // Make the rename itself durable. The new file is already in place, so a failure
  // here (some file systems refuse fsync on directories) is not reported.
  const int dir = ::open(parent_dir(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

std::string read_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw DataError("cannot read " + path + ": " + errno_text(errno));
  std::string out;
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
    out.reserve(static_cast<size_t>(st.st_size));
  }
  char buffer[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      throw DataError("cannot read " + path + ": " + errno_text(err));
    }
    if (n == 0) break;
    out.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

bool file_exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::exists(path, ec);
}

int remove_partial_writes(const std::string& dir, const std::string& prefix) {
  int removed = 0;
  std::error_code ec;
  std::vector<std::filesystem::path> partial;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file() && name.rfind(prefix, 0) == 0 && name.find(kPartialSuffix) != std::string::npos)
      partial.push_back(entry.path());
  }
  for (const auto& path : partial)
    if (std::filesystem::remove(path, ec)) ++removed;
  return removed;
}

void check_writable(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw DataError("cannot write to " + dir + ": " + ec.message());
  std::string probe = dir + "/.write-check-XXXXXX";
  const int fd = ::mkstemp(probe.data());
  if (fd < 0) throw DataError("cannot write to " + dir + ": " + std::strerror(errno));
  const bool wrote = ::write(fd, "x", 1) == 1;
  const int err = errno;
  ::close(fd);
  ::unlink(probe.c_str());
  if (!wrote) throw DataError("cannot write to " + dir + ": " + std::strerror(err));
}

uint64_t available_memory_bytes() {
  if (FILE* f = std::fopen("/proc/meminfo", "r")) {
    char line[256];
    unsigned long long kb = 0;
    while (std::fgets(line, sizeof line, f))
      if (std::sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
    std::fclose(f);
    if (kb > 0) return static_cast<uint64_t>(kb) * 1024;
  }
  const long pages = ::sysconf(_SC_AVPHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) : 0;
}

std::string gigabytes(double bytes) {
  char text[32];
  std::snprintf(text, sizeof text, bytes >= 1e8 ? "%.1f GB" : "%.3f GB", bytes / 1e9);
  return text;
}

}  // namespace vae_ebm
