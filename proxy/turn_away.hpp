#pragma once
// Internal to proxy/: what becomes of a connection accepted over max_connections.
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <cstddef>

namespace keygate::proxy {

struct Worker;

// At most this many connections per worker are being answered at a time; more are closed at
// once. Each holds its descriptor for up to turn_away_time.
inline constexpr std::size_t max_turning_away = 64;
inline constexpr std::chrono::milliseconds turn_away_time{1000};

// Answers `socket` with 503 over_capacity (Retry-After: 1, Connection: close), shuts down its
// sending side and reads and drops what the client sends until it closes, for turn_away_time
// at most, so that the kernel does not reset the connection before the client has read the
// answer; then closes it. Returns at once (the rest runs on the worker's context); the
// connection is never counted in the connections. Closed at once, with no answer, when
// max_turning_away are already being answered on this worker, or on a TLS listener (a
// handshake is what an overloaded process should not spend its time on). Both are counted in
// keygate_connections_rejected_total.
void turn_away(Worker& worker, boost::asio::ip::tcp::socket socket);

}  // namespace keygate::proxy
