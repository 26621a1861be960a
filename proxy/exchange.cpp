#include "proxy/exchange.hpp"
#include "proxy/peer_address.hpp"

#include "proxy/worker.hpp"

namespace keygate::proxy {

core::IpAddress to_ip_address(const asio::ip::address& address) {
  core::IpAddress ip;
  if (address.is_v4()) {
    const auto v4 = address.to_v4().to_bytes();
    ip.bytes[10] = ip.bytes[11] = 0xff;
    std::copy(v4.begin(), v4.end(), ip.bytes.begin() + 12);
    ip.is_v4 = true;
  } else {
    const auto v6 = address.to_v6();
    const auto bytes = v6.to_bytes();
    std::copy(bytes.begin(), bytes.end(), ip.bytes.begin());
    ip.is_v4 = v6.is_v4_mapped();
  }
  return ip;
}


ClientConnection::ClientConnection(Worker& w, tcp::socket s)
    : worker(w), stream(std::move(s)), deadline(w.io) {
  buffer.reserve(4096);
  // Bounds what one line may hold while it is parsed: a header read (max_header_bytes plus a
  // 16 KiB read), a chunk-size line with its chunk-ext, the trailer section (RFC 9112 7.1.1:
  // a server ought to limit chunk-ext; over it, the read fails with buffer_overflow: 400).
  buffer.max_size(w.options.max_header_bytes + 64 * 1024);
  error_code ec;
  stream.socket().set_option(tcp::no_delay(true), ec);
  const auto endpoint = stream.socket().remote_endpoint(ec);
  if (!ec) {
    peer = to_ip_address(endpoint.address());
    peer_text = peer.to_string();
  }
  for (const auto& network : w.options.trusted_proxies) {
    if (network.contains(peer)) peer_trusted = true;
  }
  deadline.watch_client(&stream.socket());
}

HeaderArena::HeaderArena(Worker& worker)
    : worker_(worker),
      block_(worker.header_blocks.take()),
      resource_(block_.get(), HeaderBlocks::size) {}

HeaderArena::~HeaderArena() {
  resource_.release();  // what did not fit in the block
  worker_.header_blocks.give_back(std::move(block_));
}

AnswerFraming framing_of(Exchange& x) {
  if (x.conn.worker.draining) x.close_after_answer();
  return {x.keeps_alive(), x.http10};
}

asio::awaitable<void> send_answer(Exchange& x, int status) {
  x.status = status;
  if (!x.keeps_alive() && x.body_unread) x.fate = Fate::close_lingering;
  x.conn.deadline.arm(Phase::response_body, x.conn.worker.options.idle_timeout);
  const error_code ec = co_await write_text(x.conn.stream, x.conn.scratch);
  if (ec) x.close_after_answer();
}

asio::awaitable<void> send_proxy_error(Exchange& x, const ProxyError& error) {
  if (x.body_unread) x.close_after_answer();
  format_proxy_error(x.conn.scratch, error, framing_of(x), x.rate);
  co_await send_answer(x, error.status);
}

}  // namespace keygate::proxy
