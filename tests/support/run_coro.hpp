#pragma once
// doctest cases cannot be coroutines: run_coro runs one awaitable to completion on a fresh
// io_context and returns its value (or rethrows its exception).
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <chrono>
#include <stdexcept>
#include <utility>

namespace keygate::test {

template <typename Awaitable>
auto run_coro(Awaitable awaitable, std::chrono::seconds limit = std::chrono::seconds(30)) {
  boost::asio::io_context io;
  auto future = boost::asio::co_spawn(io, std::move(awaitable), boost::asio::use_future);
  io.run_for(limit);
  if (future.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
    throw std::runtime_error("run_coro: the coroutine did not finish in time");
  }
  return future.get();
}

}  // namespace keygate::test
