// One worker's list of open connections and what the drain and the shutdown do to them.
#include "proxy/worker.hpp"

#include "core/log.hpp"

namespace keygate::proxy {

using tcp = boost::asio::ip::tcp;

Worker::Worker(ServerShared& shared_state, unsigned worker_index,
               std::vector<tcp::endpoint> upstream)
    : shared(shared_state),
      options(shared_state.options),
      index(worker_index),
      pool(std::move(upstream), shared_state.options.upstream_pool_size) {
  sessions.prev = sessions.next = &sessions;
}

void Worker::add(SessionLink& link) {
  link.next = &sessions;
  link.prev = sessions.prev;
  sessions.prev->next = &link;
  sessions.prev = &link;
}

void Worker::remove(SessionLink& link) {
  link.prev->next = link.next;
  link.next->prev = link.prev;
  link.prev = link.next = nullptr;
}

void Worker::start_draining(std::chrono::milliseconds grace) {
  draining = true;
  if (acceptor) {
    boost::system::error_code ignored;
    acceptor->close(ignored);
  }
  idle_grace_end = std::chrono::steady_clock::now() + grace;
  idle_timer.emplace(io, grace);
  idle_timer->async_wait([this](const boost::system::error_code& ec) {
    if (!ec) close_idle();
  });
}

void Worker::close_idle() {
  for (SessionLink* link = sessions.next; link != &sessions; link = link->next) {
    if (link->idle && link->socket != nullptr) {
      boost::system::error_code ignored;
      link->socket->cancel(ignored);
    }
  }
}

std::size_t Worker::cut_connections() {
  std::size_t busy = 0;
  // Closing runs no handler here, so the list does not change under the loop. The client gets
  // FIN (or RST if it sent more than was read), at once: not a hang until its own timeout.
  for (SessionLink* link = sessions.next; link != &sessions; link = link->next) {
    if (link->socket == nullptr) continue;
    if (!link->idle) ++busy;
    boost::system::error_code ignored;
    link->socket->shutdown(tcp::socket::shutdown_both, ignored);
    link->socket->close(ignored);
  }
  return busy;
}

void report_failure(std::exception_ptr failure, const char* where) {
  if (!failure) return;
  try {
    std::rethrow_exception(failure);
  } catch (const std::exception& e) {
    // A bug, not a client's doing: worth a line on stderr (never request data).
    core::log_error("unexpected failure", {{"where", where}, {"error", e.what()}});
  }
}

}  // namespace keygate::proxy
