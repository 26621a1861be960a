#pragma once
// Internal to proxy/: the life of one client connection (see session.cpp for the phases).
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

namespace keygate::proxy {

struct Worker;

// Serves requests on `socket` until the client leaves, a limit or error closes it, or the
// worker drains. The caller counted the connection in worker.shared.connections; this
// uncounts it.
boost::asio::awaitable<void> serve_connection(Worker& worker, boost::asio::ip::tcp::socket socket);

}  // namespace keygate::proxy
