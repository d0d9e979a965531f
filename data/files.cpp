// Whole-file reads and crash-safe writes (see files.h).
#include "data/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
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

}  // namespace vae_ebm
