#pragma once
// Internal to proxy/: the access log. One JSON line per request (core/json_line.hpp format), never
// written on the request path: a worker formats its line and appends it to its own buffer
// (one short, uncontended lock); a background thread swaps the buffers out and writes them
// every 200 ms, or sooner when one fills up. A buffer over its bound drops lines (counted)
// rather than grow or block.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "proxy/server.hpp"

namespace keygate::proxy {

class AccessLog {
 public:
  // Opens the file (a path other than stderr/stdout); throws std::runtime_error naming it.
  AccessLog(const AccessLogOptions& options, unsigned workers);
  ~AccessLog();  // stop()
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  // Thread-safe; the new file is opened before the old one is let go. Empty when applied,
  // else why not (the running settings are kept).
  std::string reconfigure(const AccessLogOptions& options);
  void start();  // the writer thread
  void stop();   // joins the writer and writes what is buffered; append() may still be called

  // Worker side (each worker only its own index): whether this request gets a line...
  bool wants(unsigned worker, int status);
  // ...and the line (ends in '\n').
  void append(unsigned worker, std::string_view line);

  static constexpr std::size_t buffer_limit = 1024 * 1024;  // per worker
  static constexpr std::size_t wake_at = 128 * 1024;

 private:
  struct Buffer {
    std::mutex mutex;
    std::string pending;
    std::uint64_t random = 0;  // the worker's own sampling state (xorshift64)
  };
  struct Sink {
    int fd = 2;
    bool owned = false;
  };

  static Sink open_sink(const std::string& path, std::string& error);
  void close_sink(Sink sink);
  void write_out(std::string& data);
  void flush();
  void run_writer();

  std::vector<std::unique_ptr<Buffer>> buffers_;
  std::atomic<int> mode_;
  std::atomic<std::uint64_t> threshold_;  // sampled: a line when random < threshold
  std::mutex sink_mutex_;
  Sink sink_;
  std::mutex wake_mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread writer_;
};

}  // namespace keygate::proxy
