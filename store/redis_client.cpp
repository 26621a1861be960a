// RedisClient and RedisSubscriber: the public faces of one supervised connection
// (store/redis_connector.hpp), and EVALSHA with its NOSCRIPT fallback.
#include "store/redis_client.hpp"

#include <openssl/evp.h>

#include <stdexcept>

#include "core/hex.hpp"
#include "store/redis_connector.hpp"
#include "store/redis_script_call.hpp"

namespace keygate::store {

namespace asio = boost::asio;

RedisScript::RedisScript(std::string lua) : source_(std::move(lua)) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(source_.data(), source_.size(), digest, &length, EVP_sha1(), nullptr) != 1) {
    throw std::runtime_error("SHA-1 is not available from OpenSSL");
  }
  sha1_ = core::to_hex(std::span<const std::uint8_t>(digest, length));
}

namespace {

asio::awaitable<RedisResult> eval_with(std::shared_ptr<detail::RedisConnector> connector,
                                       const RedisScript& script,
                                       std::span<const std::string_view> keys,
                                       std::span<const std::string_view> args) {
  ScriptCall call(script, keys, args);
  RedisResult result = co_await connector->command(call.argv());
  if (result.ok() && result.reply.is_error_code("NOSCRIPT")) {
    call.send_source();
    result = co_await connector->command(call.argv());
  }
  co_return result;
}

std::shared_ptr<detail::RedisConnector> command_connector(asio::any_io_executor executor,
                                                          RedisOptions options) {
  return std::make_shared<detail::RedisConnector>(
      std::move(executor), std::move(options), std::vector<RedisEndpoint>{},
      std::vector<std::string>{}, detail::RedisConnector::MessageHandler{},
      detail::RedisConnector::EventHandler{});
}

}  // namespace

namespace detail {

SupervisedRedis::SupervisedRedis(std::shared_ptr<RedisConnector> connector)
    : connector_(std::move(connector)) {}
SupervisedRedis::~SupervisedRedis() { connector_->stop(); }

void SupervisedRedis::start() { connector_->start(); }
void SupervisedRedis::stop() { connector_->stop(); }
bool SupervisedRedis::connected() const { return connector_->connected(); }

asio::awaitable<bool> SupervisedRedis::wait_connected(std::chrono::milliseconds limit) {
  return RedisConnector::wait_connected(connector_, limit);
}

}  // namespace detail

RedisClient::RedisClient(asio::any_io_executor executor, RedisOptions options)
    : connector_(command_connector(std::move(executor), std::move(options))) {}
RedisClient::~RedisClient() { connector_->stop(); }

void RedisClient::start() { connector_->start(); }
void RedisClient::stop() { connector_->stop(); }
bool RedisClient::connected() const { return connector_->connected(); }

asio::awaitable<bool> RedisClient::wait_connected(std::chrono::milliseconds limit) {
  return detail::RedisConnector::wait_connected(connector_, limit);
}

asio::awaitable<RedisResult> RedisClient::command(std::span<const std::string_view> argv) {
  return connector_->command(argv);
}

asio::awaitable<RedisResult> RedisClient::eval_script(const RedisScript& script,
                                                      std::span<const std::string_view> keys,
                                                      std::span<const std::string_view> args) {
  return eval_with(connector_, script, keys, args);
}

RedisSubscriber::RedisSubscriber(asio::any_io_executor executor, RedisOptions options,
                                 std::vector<std::string> channels, MessageHandler on_message,
                                 ReconnectHandler on_reconnect)
    : RedisSubscriber(std::move(executor), options, {RedisEndpoint{options.host, options.port}},
                      std::move(channels), std::move(on_message), std::move(on_reconnect)) {}

RedisSubscriber::RedisSubscriber(asio::any_io_executor executor, RedisOptions options,
                                 std::vector<RedisEndpoint> nodes,
                                 std::vector<std::string> channels, MessageHandler on_message,
                                 ReconnectHandler on_reconnect)
    : SupervisedRedis(std::make_shared<detail::RedisConnector>(
          std::move(executor), std::move(options), std::move(nodes), std::move(channels),
          std::move(on_message), std::move(on_reconnect))) {
  if (connector_->channel_count() == 0) {
    throw std::invalid_argument("RedisSubscriber needs at least one channel");
  }
}

const RedisEndpoint& RedisSubscriber::node() const { return connector_->endpoint(); }

}  // namespace keygate::store
