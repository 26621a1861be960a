#pragma once
// Internal to proxy/: the admin listener. GET /healthz (200 "ok"), GET /readyz (200 when
// is_ready() else 503), GET /metrics (Prometheus text format 0.0.4).
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <functional>

namespace keygate::proxy {

// Accepts until the acceptor is closed; each connection is served on the acceptor's executor.
boost::asio::awaitable<void> serve_admin(boost::asio::ip::tcp::acceptor& acceptor,
                                         const std::function<bool()>& is_ready);

}  // namespace keygate::proxy
