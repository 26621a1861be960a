#pragma once
// One timer per connection instead of one per operation (design.md: expires_after on every
// request cost ~20% throughput). Moving the deadline later is an assignment; the timer only
// re-arms when it wakes early or when a deadline earlier than the armed one is set. When the
// deadline passes, the watched sockets' pending operations are cancelled and the session sees
// operation_aborted with expired() true.
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <memory>

namespace keygate::proxy {

// What the connection was waiting for when its deadline passed: decides the answer
// (408, 502, 504, or a silent close).
enum class Phase {
  idle,               // between requests: close silently
  request_header,     // 408
  request_body,       // 408 (client stalled mid-upload)
  upstream_connect,   // 502
  upstream_response,  // 504
  response_body,      // close (the status line is already sent)
  linger,             // close
};

class Deadline {
 public:
  using Clock = std::chrono::steady_clock;

  explicit Deadline(boost::asio::io_context& io);
  ~Deadline();
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;

  // The sockets whose operations the deadline cancels (null: none).
  void watch_client(boost::asio::ip::tcp::socket* socket);
  void watch_upstream(boost::asio::ip::tcp::socket* socket);

  void arm(Phase phase, Clock::duration timeout);
  void arm_until(Phase phase, Clock::time_point at);  // already past: expires at once
  void disarm();
  bool expired() const;  // the deadline passed since the last arm()
  Phase phase() const;

 private:
  struct State;
  static void wait(std::shared_ptr<State> state);
  static void wake(std::shared_ptr<State> state);
  std::shared_ptr<State> state_;  // shared with the pending timer handler
};

}  // namespace keygate::proxy
