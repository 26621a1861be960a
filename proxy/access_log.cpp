#include "proxy/access_log.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>

#include "proxy/ops_metrics.hpp"

namespace keygate::proxy {

namespace {

constexpr auto flush_interval = std::chrono::milliseconds(200);

std::uint64_t threshold_of(double rate) {
  if (!(rate > 0)) return 0;
  if (rate >= 1) return UINT64_MAX;
  return static_cast<std::uint64_t>(rate * 18446744073709551615.0);
}

std::uint64_t next_random(std::uint64_t& state) {
  state ^= state << 13;
  state ^= state >> 7;
  state ^= state << 17;
  return state;
}

}  // namespace

AccessLog::AccessLog(const AccessLogOptions& options, unsigned workers)
    : mode_(static_cast<int>(options.mode)), threshold_(threshold_of(options.sample_rate)) {
  for (unsigned i = 0; i < workers; ++i) {
    auto buffer = std::make_unique<Buffer>();
    buffer->random = 0x9e3779b97f4a7c15ull * (i + 1) ^
                     static_cast<std::uint64_t>(
                         std::chrono::steady_clock::now().time_since_epoch().count());
    if (buffer->random == 0) buffer->random = 1;
    buffers_.push_back(std::move(buffer));
  }
  std::string error;
  sink_ = open_sink(options.path, error);
  if (!error.empty()) throw std::runtime_error(error);
}

AccessLog::~AccessLog() {
  stop();
  close_sink(sink_);
}

AccessLog::Sink AccessLog::open_sink(const std::string& path, std::string& error) {
  if (path.empty() || path == "stderr") return {STDERR_FILENO, false};
  if (path == "stdout") return {STDOUT_FILENO, false};
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) {
    error = "access_log.path " + path + ": " + std::strerror(errno);
    return {};
  }
  return {fd, true};
}

void AccessLog::close_sink(Sink sink) {
  if (sink.owned) ::close(sink.fd);
}

std::string AccessLog::reconfigure(const AccessLogOptions& options) {
  std::string error;
  const Sink sink = open_sink(options.path, error);
  if (!error.empty()) return error;
  flush();  // lines recorded under the old settings go to the old file
  Sink old;
  {
    std::lock_guard lock(sink_mutex_);
    old = sink_;
    sink_ = sink;
  }
  close_sink(old);
  threshold_.store(threshold_of(options.sample_rate), std::memory_order_relaxed);
  mode_.store(static_cast<int>(options.mode), std::memory_order_relaxed);
  return {};
}

void AccessLog::start() {
  if (writer_.joinable()) return;
  {
    std::lock_guard lock(wake_mutex_);
    stopping_ = false;
  }
  writer_ = std::thread([this] { run_writer(); });
}

void AccessLog::stop() {
  {
    std::lock_guard lock(wake_mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (writer_.joinable()) writer_.join();
  flush();
}

bool AccessLog::wants(unsigned worker, int status) {
  switch (static_cast<AccessLogOptions::Mode>(mode_.load(std::memory_order_relaxed))) {
    case AccessLogOptions::Mode::off: return false;
    case AccessLogOptions::Mode::all: return true;
    case AccessLogOptions::Mode::sampled: break;
  }
  if (status >= 500) return true;
  const std::uint64_t threshold = threshold_.load(std::memory_order_relaxed);
  return next_random(buffers_[worker]->random) < threshold || threshold == UINT64_MAX;
}

void AccessLog::append(unsigned worker, std::string_view line) {
  Buffer& buffer = *buffers_[worker];
  bool wake = false;
  {
    std::lock_guard lock(buffer.mutex);
    if (buffer.pending.size() + line.size() > buffer_limit) {
      ops_metrics().access_log_dropped.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    const bool was_below = buffer.pending.size() < wake_at;
    buffer.pending.append(line);
    wake = was_below && buffer.pending.size() >= wake_at;
  }
  if (wake) wake_.notify_one();
}

void AccessLog::write_out(std::string& data) {
  std::size_t lines = 0;
  for (const char c : data) lines += c == '\n';
  std::lock_guard lock(sink_mutex_);
  std::string_view rest = data;
  while (!rest.empty()) {
    const ssize_t n = ::write(sink_.fd, rest.data(), rest.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    rest.remove_prefix(static_cast<std::size_t>(n));
  }
  std::size_t unwritten = 0;
  for (const char c : rest) unwritten += c == '\n';
  ops_metrics().access_log_written.fetch_add(lines - unwritten, std::memory_order_relaxed);
  ops_metrics().access_log_dropped.fetch_add(unwritten, std::memory_order_relaxed);
  data.clear();
}

void AccessLog::flush() {
  std::string taken;
  for (auto& buffer : buffers_) {
    {
      std::lock_guard lock(buffer->mutex);
      if (buffer->pending.empty()) continue;
      taken.swap(buffer->pending);  // the worker gets back an empty string with capacity
    }
    write_out(taken);
  }
}

void AccessLog::run_writer() {
  std::unique_lock lock(wake_mutex_);
  while (!stopping_) {
    wake_.wait_for(lock, flush_interval);
    lock.unlock();
    flush();
    lock.lock();
  }
}

}  // namespace keygate::proxy
