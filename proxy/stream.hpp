#pragma once
// Internal to proxy/: a TCP connection that may carry TLS. The request path reads and writes a
// Stream the same way whether TLS is on or not (one branch per operation); everything that
// concerns the connection itself (cancel, close, options) goes to socket().
#include <boost/asio/async_result.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>

#include <cstddef>
#include <memory>
#include <utility>

namespace keygate::proxy {

class Stream {
 public:
  using socket_type = boost::asio::ip::tcp::socket;
  using tls_type = boost::asio::ssl::stream<socket_type&>;
  using executor_type = socket_type::executor_type;

  explicit Stream(socket_type socket) : socket_(std::move(socket)) {}
  template <typename ExecutionContext>
  explicit Stream(ExecutionContext& context) : socket_(context) {}
  // The TLS layer refers to socket_: a Stream never moves.
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  executor_type get_executor() { return socket_.get_executor(); }
  socket_type& socket() { return socket_; }

  // Wraps the connection in TLS before anything was sent; the handshake is the caller's.
  void use_tls(std::shared_ptr<boost::asio::ssl::context> context) {
    context_ = std::move(context);
    tls_ = std::make_unique<tls_type>(socket_, *context_);
  }
  bool is_tls() const { return tls_ != nullptr; }
  tls_type& tls() { return *tls_; }

  template <typename MutableBuffers, typename Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    return on_either(buffers, std::forward<Token>(token), [](auto& s, const auto& b, auto h) {
      s.async_read_some(b, std::move(h));
    });
  }

  template <typename ConstBuffers, typename Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    return on_either(buffers, std::forward<Token>(token), [](auto& s, const auto& b, auto h) {
      s.async_write_some(b, std::move(h));
    });
  }

 private:
  // Starts `operation` on the TLS stream when there is one, else on the socket.
  template <typename Buffers, typename Token, typename Operation>
  auto on_either(const Buffers& buffers, Token&& token, Operation operation) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this, operation](auto handler, const Buffers& b) {
          if (tls_) {
            operation(*tls_, b, std::move(handler));
          } else {
            operation(socket_, b, std::move(handler));
          }
        },
        token, buffers);
  }

  socket_type socket_;
  std::shared_ptr<boost::asio::ssl::context> context_;  // outlives tls_ (declared before it)
  std::unique_ptr<tls_type> tls_;
};

}  // namespace keygate::proxy
