#include "proxy/deadline.hpp"

#include <boost/asio/steady_timer.hpp>

namespace keygate::proxy {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

struct Deadline::State {
  explicit State(asio::io_context& io) : timer(io) {}
  asio::steady_timer timer;
  Clock::time_point at = Clock::time_point::max();     // the deadline
  Clock::time_point armed = Clock::time_point::max();  // what the timer waits for
  Phase phase = Phase::idle;
  bool waiting = false;
  bool expired = false;
  bool alive = true;
  tcp::socket* client = nullptr;
  tcp::socket* upstream = nullptr;
};

Deadline::Deadline(asio::io_context& io) : state_(std::make_shared<State>(io)) {}

Deadline::~Deadline() {
  state_->alive = false;
  state_->client = nullptr;
  state_->upstream = nullptr;
  if (state_->waiting) state_->timer.cancel();
}

void Deadline::watch_client(tcp::socket* socket) { state_->client = socket; }
void Deadline::watch_upstream(tcp::socket* socket) { state_->upstream = socket; }

void Deadline::arm(Phase phase, Clock::duration timeout) {
  arm_until(phase, Clock::now() + timeout);
}

void Deadline::arm_until(Phase phase, Clock::time_point at) {
  State& s = *state_;
  s.phase = phase;
  s.expired = false;
  s.at = at;
  if (s.at >= s.armed) return;  // the timer wakes first and re-arms then
  if (s.waiting) {
    s.timer.cancel();  // wake() re-arms at the earlier deadline
  } else {
    wait(state_);
  }
}

void Deadline::disarm() { state_->at = Clock::time_point::max(); }
bool Deadline::expired() const { return state_->expired; }
Phase Deadline::phase() const { return state_->phase; }

void Deadline::wait(std::shared_ptr<State> state) {
  State& s = *state;
  s.armed = s.at;
  s.waiting = true;
  s.timer.expires_at(s.armed);
  s.timer.async_wait([state = std::move(state)](const boost::system::error_code&) mutable {
    wake(std::move(state));
  });
}

void Deadline::wake(std::shared_ptr<State> state) {
  State& s = *state;
  s.waiting = false;
  s.armed = Clock::time_point::max();
  if (!s.alive || s.at == Clock::time_point::max()) return;
  if (Clock::now() < s.at) {
    wait(std::move(state));
    return;
  }
  s.expired = true;
  s.at = Clock::time_point::max();
  boost::system::error_code ignored;
  if (s.client != nullptr) s.client->cancel(ignored);
  if (s.upstream != nullptr) s.upstream->cancel(ignored);
}

}  // namespace keygate::proxy
