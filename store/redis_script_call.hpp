#pragma once
// One call of a Lua script: EVALSHA's argv built in place (no allocation up to 16 words), and
// its EVAL form for the retry after NOSCRIPT. Shared by RedisClient and RedisClusterClient.
#include <boost/container/small_vector.hpp>

#include <charconv>
#include <span>
#include <string_view>

#include "store/redis_commands.hpp"

namespace keygate::store {

class ScriptCall {
 public:
  ScriptCall(const RedisScript& script, std::span<const std::string_view> keys,
             std::span<const std::string_view> args)
      : script_(script) {
    const auto converted = std::to_chars(key_count_, key_count_ + sizeof key_count_, keys.size());
    argv_.push_back("EVALSHA");
    argv_.push_back(script.sha1());
    argv_.push_back(std::string_view(key_count_, converted.ptr));
    argv_.insert(argv_.end(), keys.begin(), keys.end());
    argv_.insert(argv_.end(), args.begin(), args.end());
  }
  ScriptCall(const ScriptCall&) = delete;  // argv_ points into key_count_
  ScriptCall& operator=(const ScriptCall&) = delete;

  std::span<const std::string_view> argv() const { return {argv_.data(), argv_.size()}; }

  // The server has no cached copy (a restart, SCRIPT FLUSH, or a cluster node that has not
  // seen it): EVAL sends the source, which runs it and caches it.
  void send_source() {
    argv_[0] = "EVAL";
    argv_[1] = script_.source();
  }

 private:
  const RedisScript& script_;
  char key_count_[24];
  boost::container::small_vector<std::string_view, 16> argv_;
};

}  // namespace keygate::store
