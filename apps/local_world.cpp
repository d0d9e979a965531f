// --nproc N: the processes of a data-parallel run on this machine, started by vae-ebm itself
// instead of torchrun. The process given --nproc parses the flags (so a bad one is said once),
// then starts N copies of this program (/proc/self/exe) with the same command line less --nproc
// and the environment torchrun would give them, and waits: it computes nothing itself. That
// parent, not one of the ranks, is what the user and a scheduler see, so it:
//  - passes SIGINT, SIGTERM and SIGHUP on to the ranks, once (they are in a process group of
//    their own, so Ctrl-C at a terminal reaches the parent only, and a rank never gets one
//    signal twice: train takes a second one as "stop now, without a checkpoint");
//  - takes the ranks with it when it dies (PR_SET_PDEATHSIG: SIGKILL), even by kill -9;
//  - when a rank fails, gives the others kGrace to end by themselves (they find the lost rank
//    within 5 s, naming it), kills those left, and exits with the failed rank's status,
//    naming it.
#include <torch/torch.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "apps/cli.h"

extern char** environ;

namespace vae_ebm::cli {

namespace {

// How long the other ranks may take to end by themselves after one failed.
constexpr auto kGrace = std::chrono::seconds(15);

std::vector<std::string>& command_line() {
  static std::vector<std::string> line;
  return line;
}

// The variables torchrun sets, which the ranks get anew.
const char* const kLaunchVariables[] = {"RANK",        "LOCAL_RANK",  "WORLD_SIZE",
                                        "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                                        "GROUP_RANK",  "ROLE_RANK",   "TORCHELASTIC_USE_AGENT_STORE",
                                        "TORCHELASTIC_RESTART_COUNT"};

// A port on 127.0.0.1 that nothing listens on now (the kernel's choice).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error(std::string("--nproc: cannot open a socket: ") + std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t n = sizeof a;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n) == 0;
  const int error = errno;
  ::close(fd);
  if (!ok) throw std::runtime_error(std::string("--nproc: no free port on 127.0.0.1: ") + std::strerror(error));
  return ntohs(a.sin_port);
}

// The command line less --nproc (as "--nproc N" or "--nproc=N").
std::vector<std::string> without_nproc(const std::vector<std::string>& line) {
  std::vector<std::string> out;
  for (size_t i = 0; i < line.size(); ++i) {
    if (line[i] == "--nproc") {
      ++i;  // and its value
      continue;
    }
    if (line[i].rfind("--nproc=", 0) == 0) continue;
    out.push_back(line[i]);
  }
  return out;
}

std::vector<pid_t> g_ranks;  // read by the signal handler
volatile sig_atomic_t g_signalled = 0;

extern "C" void pass_on(int signal) {
  g_signalled = signal;
  for (pid_t pid : g_ranks)
    if (pid > 0) ::kill(pid, signal);
}

std::string status_text(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int s = WTERMSIG(status);
    const char* name = sigabbrev_np(s);
    return "was killed by " + (name ? "SIG" + std::string(name) : "signal " + std::to_string(s));
  }
  return "ended with status " + std::to_string(status);
}

bool failed(int status) { return !WIFEXITED(status) || WEXITSTATUS(status) != 0; }

int exit_code(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }

}  // namespace

void keep_command_line(int argc, char** argv) { command_line().assign(argv, argv + argc); }

int parse_nproc(const std::string& text) {
  char* end = nullptr;
  errno = 0;
  const long n = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || errno || *end || n < 1 || n > kMaxNproc)
    throw UsageError("--nproc expects the number of processes to start on this machine, an integer in [1, " +
                     std::to_string(kMaxNproc) + "], got '" + text + "'");
  return static_cast<int>(n);
}

int run_local_world(int nproc, const std::string& command) {
  if (const char* world = std::getenv("WORLD_SIZE"); world && *world)
    throw UsageError("--nproc " + std::to_string(nproc) + ": WORLD_SIZE=" + world +
                     " is set, so this process is already one of a data-parallel run's (torchrun's?), which "
                     "starts the processes itself: drop --nproc");
  if (command_line().empty())
    throw UsageError("--nproc: the command line is not known here (only the vae-ebm program starts processes)");
  const auto args = without_nproc(command_line());
  const int port = free_port();
  // Everything the children need is made before the first fork: between fork and exec a child
  // of this (threaded) process may only make async-signal-safe calls.
  std::vector<std::string> kept_environment;
  for (char** e = environ; *e; ++e) {
    const std::string entry = *e;
    bool launch = false;
    for (const char* name : kLaunchVariables)
      launch = launch || entry.rfind(std::string(name) + "=", 0) == 0;
    if (!launch) kept_environment.push_back(entry);
  }
  std::vector<std::vector<std::string>> environments(nproc, kept_environment);
  for (int r = 0; r < nproc; ++r)
    for (const auto& [name, value] : std::vector<std::pair<std::string, std::string>>{
             {"RANK", std::to_string(r)},
             {"LOCAL_RANK", std::to_string(r)},
             {"WORLD_SIZE", std::to_string(nproc)},
             {"LOCAL_WORLD_SIZE", std::to_string(nproc)},
             {"MASTER_ADDR", "127.0.0.1"},
             {"MASTER_PORT", std::to_string(port)}})
      environments[r].push_back(name + "=" + value);
  auto pointers = [](std::vector<std::string>& strings) {
    std::vector<char*> out;
    for (auto& s : strings) out.push_back(s.data());
    out.push_back(nullptr);
    return out;
  };
  auto argv_strings = args;
  auto argv = pointers(argv_strings);
  std::vector<std::vector<char*>> envp;
  for (auto& e : environments) envp.push_back(pointers(e));

  std::fflush(nullptr);
  const pid_t parent = ::getpid();
  g_ranks.assign(nproc, 0);
  pid_t group = 0;
  for (int r = 0; r < nproc; ++r) {
    const pid_t pid = ::fork();
    if (pid < 0) {
      const int error = errno;
      for (pid_t p : g_ranks)
        if (p > 0) ::kill(p, SIGKILL);
      while (::wait(nullptr) > 0) {
      }
      throw std::runtime_error("--nproc: cannot start rank " + std::to_string(r) + ": " + std::strerror(error));
    }
    if (pid == 0) {
      // The child: dies with the parent (also if the parent is already gone), joins the
      // ranks' process group, becomes the program again.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      ::setpgid(0, group);
      ::execve("/proc/self/exe", argv.data(), envp[r].data());
      ::_exit(127);
    }
    if (group == 0) group = pid;
    ::setpgid(pid, group);  // as the child does: whichever runs first
    g_ranks[r] = pid;
  }
  std::string ranks;
  for (int r = 0; r < nproc; ++r)
    ranks += (r ? ", rank " : "rank ") + std::to_string(r) + " pid " + std::to_string(g_ranks[r]);
  std::fprintf(stderr, "vae-ebm %s: started %d processes on this machine: %s (store at 127.0.0.1:%d)\n",
               command.c_str(), nproc, ranks.c_str(), port);
  struct sigaction action {};
  action.sa_handler = pass_on;
  sigemptyset(&action.sa_mask);
  struct sigaction previous[3];
  const int passed[] = {SIGINT, SIGTERM, SIGHUP};
  for (int i = 0; i < 3; ++i) ::sigaction(passed[i], &action, &previous[i]);

  std::vector<int> statuses(nproc, 0);
  int running = nproc, first_failed = -1;
  auto deadline = std::chrono::steady_clock::time_point::max();
  bool killed = false;
  while (running > 0) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, first_failed >= 0 ? WNOHANG : 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      break;  // ECHILD: none left
    }
    if (pid == 0) {
      if (!killed && std::chrono::steady_clock::now() >= deadline) {
        for (int r = 0; r < nproc; ++r)
          if (g_ranks[r] > 0) ::kill(g_ranks[r], SIGKILL);
        killed = true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    for (int r = 0; r < nproc; ++r)
      if (g_ranks[r] == pid) {
        statuses[r] = status;
        g_ranks[r] = 0;  // no more signals to a pid that may be reused
        --running;
        if (failed(status) && first_failed < 0) {
          first_failed = r;
          deadline = std::chrono::steady_clock::now() + kGrace;
        }
      }
  }
  for (int i = 0; i < 3; ++i) ::sigaction(passed[i], &previous[i], nullptr);
  if (first_failed < 0) return 0;
  std::string others;
  for (int r = 0; r < nproc; ++r)
    if (r != first_failed && failed(statuses[r]))
      others += (others.empty() ? "; then " : ", ") + ("rank " + std::to_string(r) + " " + status_text(statuses[r]));
  const std::string late =
      killed ? "; the ranks still running " + std::to_string(kGrace.count()) + " s later were killed" : "";
  // Stopped on purpose (a signal passed on), or failed.
  const char* passed_on = g_signalled ? sigabbrev_np(g_signalled) : nullptr;
  const std::string why = passed_on ? "SIG" + std::string(passed_on) + " passed on to the ranks" : "error";
  std::fprintf(stderr, "vae-ebm %s: %s: --nproc %d: rank %d of %d %s%s%s (see the ranks' output above)\n",
               command.c_str(), why.c_str(), nproc, first_failed, nproc, status_text(statuses[first_failed]).c_str(),
               others.c_str(), late.c_str());
  return exit_code(statuses[first_failed]);
}

}  // namespace vae_ebm::cli
