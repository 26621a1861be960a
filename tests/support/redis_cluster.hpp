#pragma once
// A private Redis Cluster for tests that reshard, fail over or kill nodes (doing that to the
// shared one of KEYGATE_TEST_REDIS_CLUSTER would disturb the tests beside them): `masters`
// redis-server --cluster-enabled nodes and one replica each, on free loopback ports, in a
// temporary folder, joined by `redis-cli --cluster create`. The constructor returns once every
// node says cluster_state:ok and every replica has synced (about 2 s). Every node is killed by
// its PID when the guard goes, and PR_SET_PDEATHSIG kills it if the test process dies first.
#include <stdio.h>
#include <stdlib.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "store/redis_options.hpp"
#include "support/redis_server.hpp"  // free_port, wait_for_port

namespace keygate::test {

// The cluster seeds scripts/test started (KEYGATE_TEST_REDIS_CLUSTER: host:port,host:port,...).
inline std::vector<store::RedisEndpoint> shared_cluster_seeds() {
  const char* value = std::getenv("KEYGATE_TEST_REDIS_CLUSTER");
  if (value == nullptr || *value == '\0') {
    throw std::runtime_error("KEYGATE_TEST_REDIS_CLUSTER is not set: run the tests through ./scripts/test");
  }
  std::vector<store::RedisEndpoint> seeds;
  std::stringstream list(value);
  for (std::string item; std::getline(list, item, ',');) {
    const auto colon = item.rfind(':');
    seeds.push_back({item.substr(0, colon), static_cast<std::uint16_t>(std::stoi(item.substr(colon + 1)))});
  }
  return seeds;
}

// Runs a command line (only ports and fixed words in it) and returns its output.
inline std::string run_output(const std::string& command) {
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) throw std::runtime_error("popen failed: " + command);
  std::string out;
  char buffer[4096];
  while (const std::size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) out.append(buffer, n);
  ::pclose(pipe);
  return out;
}

struct ClusterNode {
  std::string id;
  std::uint16_t port = 0;
  std::string flags;
  std::string master_id;  // "-" for a master
  std::vector<std::string> slots;
  bool is_master() const { return flags.find("master") != std::string::npos; }
  bool failed() const { return flags.find("fail") != std::string::npos; }
};

// CLUSTER NODES as the node on `port` sees it.
inline std::vector<ClusterNode> cluster_nodes(std::uint16_t port) {
  std::vector<ClusterNode> out;
  std::stringstream text(run_output("redis-cli -p " + std::to_string(port) + " CLUSTER NODES"));
  for (std::string line; std::getline(text, line);) {
    std::stringstream words(line);
    ClusterNode node;
    std::string address, ping, pong, epoch, link;
    if (!(words >> node.id >> address >> node.flags >> node.master_id >> ping >> pong >> epoch >> link)) continue;
    const auto at = address.find('@');
    node.port = static_cast<std::uint16_t>(std::stoi(address.substr(address.rfind(':', at) + 1)));
    for (std::string slot; words >> slot;) node.slots.push_back(slot);
    out.push_back(node);
  }
  return out;
}

// The port of the master serving `slot` as the node on `port` sees it (0 when none does).
inline std::uint16_t cluster_master_of(std::uint16_t port, std::uint16_t slot) {
  for (const ClusterNode& node : cluster_nodes(port)) {
    if (!node.is_master() || node.failed()) continue;
    for (const std::string& range : node.slots) {
      if (range.starts_with('[')) continue;  // a migration in progress
      const auto dash = range.find('-');
      const int first = std::stoi(range.substr(0, dash));
      const int last = dash == std::string::npos ? first : std::stoi(range.substr(dash + 1));
      if (slot >= first && slot <= last) return node.port;
    }
  }
  return 0;
}

class RedisCluster {
 public:
  explicit RedisCluster(int masters = 3, int node_timeout_ms = 2000) : node_timeout_ms_(node_timeout_ms) {
    char pattern[] = "/tmp/keygate-cluster.XXXXXX";
    if (::mkdtemp(pattern) == nullptr) throw std::runtime_error("RedisCluster: mkdtemp failed");
    dir_ = pattern;
    try {
      std::string create = "redis-cli --cluster create";
      for (int i = 0; i < 2 * masters; ++i) {
        const std::uint16_t port = cluster_port();
        ports_.push_back(port);
        start_node(port);
        create += " 127.0.0.1:" + std::to_string(port);
      }
      create += " --cluster-replicas 1 --cluster-yes";
      const std::string out = run_output(create);
      if (out.find("All 16384 slots covered") == std::string::npos) {
        throw std::runtime_error("RedisCluster: redis-cli --cluster create failed:\n" + out);
      }
      if (!wait_healthy(masters, std::chrono::seconds(20))) {
        throw std::runtime_error("RedisCluster: not healthy within 20 s");
      }
    } catch (...) {
      stop_all();
      throw;
    }
  }
  ~RedisCluster() { stop_all(); }
  RedisCluster(const RedisCluster&) = delete;
  RedisCluster& operator=(const RedisCluster&) = delete;

  const std::vector<std::uint16_t>& ports() const { return ports_; }
  std::vector<store::RedisEndpoint> seeds() const {
    std::vector<store::RedisEndpoint> out;
    for (const std::uint16_t port : ports_) out.push_back({"127.0.0.1", port});
    return out;
  }

  // redis-cli -p PORT ARGS... (arguments are plain words: no quoting needed).
  std::string cli(std::uint16_t port, const std::string& args) const {
    return run_output("redis-cli -p " + std::to_string(port) + " " + args);
  }

  std::vector<ClusterNode> nodes(std::uint16_t port) const { return cluster_nodes(port); }
  // The master serving `slot`, as a running node sees it (0 when none does).
  std::uint16_t master_of(std::uint16_t slot) const { return cluster_master_of(any_running(), slot); }

  std::string node_id(std::uint16_t port) const {
    std::string id = cli(port, "CLUSTER MYID");
    while (!id.empty() && (id.back() == '\n' || id.back() == '\r')) id.pop_back();
    return id;
  }

  // A replica of the master on `port` whose link to it is up (0: none), as the replicas say.
  std::uint16_t replica_of(std::uint16_t port) const {
    const std::string master = "master_port:" + std::to_string(port) + "\r\n";
    for (const std::uint16_t other : ports_) {
      if (other == port || !running(other)) continue;
      const std::string info = cli(other, "INFO replication");
      if (info.find(master) != std::string::npos && info.find("master_link_status:up") != std::string::npos) {
        return other;
      }
    }
    return 0;
  }

  bool running(std::uint16_t port) const { return pids_.contains(port); }
  std::uint16_t any_running() const {
    for (const std::uint16_t port : ports_) {
      if (running(port)) return port;
    }
    throw std::runtime_error("RedisCluster: no node running");
  }

  // SIGKILL: to the other nodes and to clients, a crash.
  void kill(std::uint16_t port) {
    const auto found = pids_.find(port);
    if (found == pids_.end()) return;
    ::kill(found->second, SIGKILL);
    int status = 0;
    ::waitpid(found->second, &status, 0);
    pids_.erase(found);
  }

  // Every running node says cluster_state:ok, `masters` masters serve slots, and each has a
  // replica whose link to it is up.
  bool wait_healthy(int masters, std::chrono::milliseconds limit) const {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      if (healthy(masters)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

 private:
  bool healthy(int masters) const {
    for (const std::uint16_t port : ports_) {
      if (running(port) && cli(port, "CLUSTER INFO").find("cluster_state:ok") == std::string::npos) return false;
    }
    const std::vector<ClusterNode> all = nodes(any_running());
    int serving = 0;
    for (const ClusterNode& master : all) {
      if (!master.is_master() || master.failed() || master.slots.empty()) continue;
      ++serving;
      bool synced = false;
      for (const ClusterNode& replica : all) {
        if (replica.master_id == master.id && !replica.failed() &&
            cli(replica.port, "INFO replication").find("master_link_status:up") != std::string::npos) {
          synced = true;
        }
      }
      if (!synced) return false;
    }
    return serving == masters;
  }

  // A free port whose cluster bus port (port + 10000) is free too.
  std::uint16_t cluster_port() const {
    for (int attempt = 0; attempt < 1000; ++attempt) {
      const std::uint16_t port = free_port();
      if (port > 55535) continue;
      bool clash = false;
      for (const std::uint16_t taken : ports_) clash = clash || taken == port || taken + 10000 == port || taken == port + 10000;
      if (clash || !port_free(static_cast<std::uint16_t>(port + 10000))) continue;
      return port;
    }
    throw std::runtime_error("RedisCluster: no free port pair");
  }

  static bool port_free(std::uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return false;
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(port);
    const bool free = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
    ::close(fd);
    return free;
  }

  void start_node(std::uint16_t port) {
    const std::string port_text = std::to_string(port);
    const std::string config_file = dir_ + "/nodes-" + port_text + ".conf";
    const std::string log_file = dir_ + "/server-" + port_text + ".log";
    const std::string timeout = std::to_string(node_timeout_ms_);
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("RedisCluster: fork failed");
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      const int null_fd = ::open("/dev/null", O_RDWR);
      const int log_fd = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
      if (log_fd >= 0) {
        ::dup2(log_fd, STDOUT_FILENO);
        ::dup2(log_fd, STDERR_FILENO);
      }
      ::execlp("redis-server", "redis-server", "--port", port_text.c_str(), "--bind", "127.0.0.1",
               "--cluster-enabled", "yes", "--cluster-config-file", config_file.c_str(),
               "--cluster-node-timeout", timeout.c_str(), "--save", "", "--appendonly", "no",
               "--repl-diskless-sync-delay", "0", "--dir", dir_.c_str(), "--daemonize", "no",
               static_cast<char*>(nullptr));
      ::_exit(127);
    }
    pids_[port] = pid;
    if (!wait_for_port(port, std::chrono::seconds(10))) {
      throw std::runtime_error("RedisCluster: redis-server did not start on port " + port_text);
    }
  }

  void stop_all() {
    while (!pids_.empty()) kill(pids_.begin()->first);
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  int node_timeout_ms_;
  std::string dir_;
  std::vector<std::uint16_t> ports_;
  std::map<std::uint16_t, pid_t> pids_;
};

}  // namespace keygate::test
