#include "proxy/turn_away.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <string>

#include "proxy/answers.hpp"
#include "proxy/deadline.hpp"
#include "proxy/ops_metrics.hpp"
#include "proxy/worker.hpp"

namespace keygate::proxy {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

const std::string& over_capacity_answer() {
  static const std::string text = [] {
    std::string out;
    format_over_capacity(out);
    return out;
  }();
  return text;
}

asio::awaitable<void> answer_and_close(Worker& worker, tcp::socket socket) {
  struct Done {
    Worker& worker;
    ~Done() { --worker.turning_away; }
  } done{worker};
  constexpr auto tuple = asio::as_tuple(asio::use_awaitable);
  Deadline deadline(worker.io);  // the whole of it, answer and linger
  deadline.watch_client(&socket);
  deadline.arm(Phase::linger, turn_away_time);
  const std::string& answer = over_capacity_answer();
  auto [ec, n] = co_await asio::async_write(socket, asio::buffer(answer), tuple);
  if (!ec) socket.shutdown(tcp::socket::shutdown_send, ec);
  std::array<char, 1024> dropped;
  while (!ec) {
    auto [read_error, m] = co_await socket.async_read_some(asio::buffer(dropped), tuple);
    ec = read_error;  // the client's FIN (eof), a reset, or the deadline
  }
  deadline.watch_client(nullptr);
  boost::system::error_code ignored;
  socket.close(ignored);
}

}  // namespace

void turn_away(Worker& worker, tcp::socket socket) {
  OpsMetrics& counters = ops_metrics();
  if (worker.tls || worker.turning_away >= max_turning_away) {
    counters.connections_rejected_closed.fetch_add(1, std::memory_order_relaxed);
    boost::system::error_code ignored;
    socket.close(ignored);
    return;
  }
  counters.connections_rejected_answered.fetch_add(1, std::memory_order_relaxed);
  ++worker.turning_away;
  asio::co_spawn(worker.io, answer_and_close(worker, std::move(socket)),
                 [](std::exception_ptr e) { report_failure(e, "turning a connection away"); });
}

}  // namespace keygate::proxy
