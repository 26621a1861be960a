// proxy::Server's shutdown order: a request suspended below the proxy at shutdown_timeout is
// cut (its client sees the connection close), every worker's stack has its last run, and a
// stack is destroyed only after the suspended request's coroutine.
#include "proxy_harness.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>

#include <algorithm>

namespace keygate::test {
namespace {

// What happened, in order, on any thread.
struct Events {
  std::mutex mutex;
  std::vector<std::string> seen;
  std::atomic<int> waiting{0};
  void add(std::string what) {
    std::lock_guard lock(mutex);
    seen.push_back(std::move(what));
  }
  std::vector<std::string> snapshot() {
    std::lock_guard lock(mutex);
    return seen;
  }
};

// Like a lookup in a store that never answers: every request waits on a timer that never
// fires. The frame holds a marker whose destruction is recorded.
class StuckAuthorizer final : public authz::Authorizer {
 public:
  explicit StuckAuthorizer(Events& events) : events_(events) {}
  asio::awaitable<authz::AuthResult> authorize(const authz::AuthRequest&) override {
    struct Marker {
      Events& events;
      ~Marker() { events.add("request destroyed"); }
    } marker{events_};
    asio::steady_timer never(co_await asio::this_coro::executor,
                             asio::steady_timer::time_point::max());
    ++events_.waiting;
    co_await never.async_wait(asio::as_tuple(asio::use_awaitable));
    co_return authz::AuthResult{};
  }

 private:
  Events& events_;
};

struct RecordingStack final : proxy::WorkerStack {
  explicit RecordingStack(Events& recorded) : events(recorded), authorizer(recorded) {}
  ~RecordingStack() override { events.add("stack destroyed"); }
  asio::awaitable<void> finish() override {
    events.add("last run");
    co_return;
  }
  Events& events;
  StuckAuthorizer authorizer;
};

proxy::WorkerFactory recording_stacks(Events& events) {
  return [&events](asio::io_context&, unsigned) {
    auto stack = std::make_unique<RecordingStack>(events);
    proxy::WorkerServices services;
    services.authorizer = &stack->authorizer;
    services.stack = std::move(stack);
    return services;
  };
}

std::size_t count(const std::vector<std::string>& seen, std::string_view what) {
  return static_cast<std::size_t>(std::count(seen.begin(), seen.end(), what));
}

}  // namespace
}  // namespace keygate::test

using namespace keygate::test;
namespace proxy = keygate::proxy;

TEST_CASE("shutdown: requests stuck below the proxy at shutdown_timeout are cut, and destroyed "
          "before their worker's stack") {
  Events events;
  auto options = test_options(1);
  options.threads = 2;
  options.shutdown_timeout = 300ms;
  std::vector<std::string> before_destruction;
  {
    proxy::Server server(options, recording_stacks(events), [] { return true; });
    server.listen();
    std::thread runner([&] { server.run(); });
    RawClient first(server.port()), second(server.port());
    REQUIRE(first.send(get("/stuck", bearer(good_key))));
    REQUIRE(second.send(get("/stuck", bearer(good_key))));
    const auto waiting_by = std::chrono::steady_clock::now() + 5s;
    while (events.waiting.load() < 2 && std::chrono::steady_clock::now() < waiting_by) {
      std::this_thread::sleep_for(5ms);
    }
    REQUIRE(events.waiting.load() == 2);

    const auto started = std::chrono::steady_clock::now();
    server.stop();
    // Cut at the deadline: closed with no answer, not left waiting.
    CHECK(first.closed_by_peer(5s));
    CHECK(second.closed_by_peer(5s));
    runner.join();
    const auto took = std::chrono::steady_clock::now() - started;
    CHECK(took >= 300ms);
    CHECK(took < 3s);
    before_destruction = events.snapshot();
  }
  // Both stacks had their last run while the requests were still suspended; then the
  // requests' coroutines were destroyed, and only after them the stacks.
  CHECK(before_destruction == std::vector<std::string>{"last run", "last run"});
  const auto seen = events.snapshot();
  REQUIRE(seen.size() == 6);
  CHECK(count({seen.begin() + 2, seen.begin() + 4}, "request destroyed") == 2);
  CHECK(count({seen.begin() + 4, seen.end()}, "stack destroyed") == 2);
}

TEST_CASE("shutdown: with nothing in flight each worker's stack has its last run, then goes") {
  Events events;
  auto options = test_options(1);
  options.threads = 3;
  {
    proxy::Server server(options, recording_stacks(events), [] { return true; });
    server.stop();  // before run(): run() drains at once
    server.run();
    CHECK(events.snapshot() == std::vector<std::string>(3, "last run"));
  }
  CHECK(count(events.snapshot(), "stack destroyed") == 3);
}
