// Key slots, slot maps and redirections of Redis Cluster (pure: no I/O).
#include "store/redis_cluster_slots.hpp"

#include <algorithm>
#include <array>
#include <charconv>

#include "core/text.hpp"

namespace keygate::store {

namespace {

// The CRC16-XMODEM table, built at compile time.
constexpr std::array<std::uint16_t, 256> crc16_table = [] {
  std::array<std::uint16_t, 256> table{};
  for (unsigned i = 0; i < 256; ++i) {
    unsigned crc = i << 8;
    for (int bit = 0; bit < 8; ++bit) crc = (crc & 0x8000) != 0 ? (crc << 1) ^ 0x1021 : crc << 1;
    table[i] = static_cast<std::uint16_t>(crc);
  }
  return table;
}();

bool is_host_char(char c) {
  return core::is_ascii_alpha(c) || core::is_ascii_digit(c) || c == '.' || c == '-' || c == '_' ||
         c == ':';
}

std::optional<std::uint16_t> port_of(std::string_view text) {
  unsigned value = 0;
  const char* end = text.data() + text.size();
  const auto [stop, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || text.size() > 5 || ec != std::errc{} || stop != end || value < 1 ||
      value > 65535) {
    return std::nullopt;
  }
  return static_cast<std::uint16_t>(value);
}

std::optional<std::uint16_t> slot_of(std::string_view text) {
  unsigned value = 0;
  const char* end = text.data() + text.size();
  const auto [stop, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || text.size() > 5 || ec != std::errc{} || stop != end ||
      value >= cluster_slot_count) {
    return std::nullopt;
  }
  return static_cast<std::uint16_t>(value);
}

bool is_command(std::string_view name, std::initializer_list<std::string_view> names) {
  return std::any_of(names.begin(), names.end(),
                     [name](std::string_view n) { return core::iequals_ascii(name, n); });
}

enum class NodeOutcome { ok, unusable, malformed };

// [host, port, id, ...] -> endpoint. NULL or "" host: the queried host; "?": unusable.
NodeOutcome read_node(const RedisReply& node, std::string_view queried_host, RedisEndpoint& out) {
  if (node.kind != RedisReply::Kind::array || node.elements.size() < 2) return NodeOutcome::malformed;
  const RedisReply& host = node.elements[0];
  const RedisReply& port = node.elements[1];
  if (port.kind != RedisReply::Kind::integer) return NodeOutcome::malformed;
  if (host.kind != RedisReply::Kind::string && host.kind != RedisReply::Kind::nil) {
    return NodeOutcome::malformed;
  }
  if (host.str == "?" || port.integer < 1 || port.integer > 65535) return NodeOutcome::unusable;
  out.host = host.str.empty() ? std::string(queried_host) : host.str;
  if (out.host.empty() || out.host.size() > 253 ||
      !std::all_of(out.host.begin(), out.host.end(), is_host_char)) {
    return NodeOutcome::malformed;
  }
  out.port = static_cast<std::uint16_t>(port.integer);
  return NodeOutcome::ok;
}

}  // namespace

std::uint16_t crc16_xmodem(std::string_view bytes) {
  std::uint16_t crc = 0;
  for (const char c : bytes) {
    crc = static_cast<std::uint16_t>((crc << 8) ^ crc16_table[((crc >> 8) ^ static_cast<unsigned char>(c)) & 0xff]);
  }
  return crc;
}

std::string_view hash_tag_of(std::string_view key) {
  const std::size_t open = key.find('{');
  if (open == std::string_view::npos) return key;
  const std::size_t close = key.find('}', open + 1);
  if (close == std::string_view::npos || close == open + 1) return key;  // none, or "{}"
  return key.substr(open + 1, close - open - 1);
}

std::uint16_t key_slot(std::string_view key) {
  return static_cast<std::uint16_t>(crc16_xmodem(hash_tag_of(key)) & (cluster_slot_count - 1));
}

std::optional<std::string_view> routing_key(std::span<const std::string_view> argv) {
  if (argv.size() < 2) return std::nullopt;
  const std::string_view name = argv[0];
  if (is_command(name, {"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"})) {
    if (argv.size() < 4 || argv[2].empty() || argv[2] == "0" || argv[2][0] == '-') return std::nullopt;
    return argv[3];
  }
  if (is_command(name, {"PING", "ECHO", "INFO", "TIME", "PUBLISH", "SPUBLISH", "SCRIPT", "CLUSTER",
                        "CLIENT", "CONFIG", "COMMAND", "DBSIZE", "FLUSHALL", "FLUSHDB", "FUNCTION",
                        "AUTH", "HELLO", "SELECT", "WAIT", "LASTSAVE", "MEMORY", "SLOWLOG",
                        "LATENCY", "ACL", "DEBUG", "ROLE", "SHUTDOWN", "SAVE", "BGSAVE"})) {
    return std::nullopt;
  }
  return argv[1];
}

std::optional<RedisRedirect> parse_redirect(const RedisReply& reply, std::string_view answered_by) {
  RedisRedirect out;
  std::string_view code;
  if (reply.is_error_code("MOVED")) {
    out.kind = RedisRedirect::Kind::moved;
    code = "MOVED";
  } else if (reply.is_error_code("ASK")) {
    out.kind = RedisRedirect::Kind::ask;
    code = "ASK";
  } else {
    return std::nullopt;
  }
  const std::string_view text = reply.str;
  if (text.size() <= code.size() + 1) return std::nullopt;  // "MOVED" alone
  const std::string_view rest = text.substr(code.size() + 1);
  const std::size_t space = rest.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  const auto slot = slot_of(rest.substr(0, space));
  std::string_view address = rest.substr(space + 1);
  if (!slot || address.find(' ') != std::string_view::npos) return std::nullopt;
  out.slot = *slot;
  std::optional<RedisEndpoint> target;
  if (address.starts_with(':') && address.find(':', 1) == std::string_view::npos) {
    const auto port = port_of(address.substr(1));
    if (!port || answered_by.empty()) return std::nullopt;
    target = RedisEndpoint{std::string(answered_by), *port};
  } else {
    target = parse_endpoint(address);
  }
  if (!target) return std::nullopt;
  out.target = std::move(*target);
  return out;
}

std::optional<RedisEndpoint> parse_endpoint(std::string_view text) {
  std::string_view host;
  std::string_view port;
  if (text.starts_with('[')) {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos || text.substr(close + 1, 1) != ":") return std::nullopt;
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    if (host.find(':') == std::string_view::npos) return std::nullopt;  // brackets are for IPv6
  } else {
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  const auto number = port_of(port);
  if (!number || host.empty() || host.size() > 253 ||
      !std::all_of(host.begin(), host.end(), is_host_char)) {
    return std::nullopt;
  }
  return RedisEndpoint{std::string(host), *number};
}

std::size_t RedisSlotMap::covered_slots() const {
  return static_cast<std::size_t>(
      std::count_if(owners_.begin(), owners_.end(), [](std::uint16_t o) { return o != no_master; }));
}

std::uint16_t RedisSlotMap::add_master(const RedisEndpoint& master) {
  const auto found = std::find(masters_.begin(), masters_.end(), master);
  if (found != masters_.end()) return static_cast<std::uint16_t>(found - masters_.begin());
  if (masters_.size() >= no_master) return no_master;  // cannot happen: 16384 slots at most
  masters_.push_back(master);
  return static_cast<std::uint16_t>(masters_.size() - 1);
}

std::uint16_t RedisSlotMap::assign(std::uint16_t slot, const RedisEndpoint& master) {
  const std::uint16_t index = add_master(master);
  owners_[slot % cluster_slot_count] = index;
  return index;
}

void RedisSlotMap::assign_range(std::uint16_t first, std::uint16_t last, std::uint16_t master) {
  for (unsigned slot = first; slot <= last && slot < cluster_slot_count; ++slot) owners_[slot] = master;
}

void RedisSlotMap::add_replica(const RedisEndpoint& replica) {
  if (std::find(replicas_.begin(), replicas_.end(), replica) == replicas_.end()) {
    replicas_.push_back(replica);
  }
}

std::optional<RedisSlotMap> parse_cluster_slots(const RedisReply& reply,
                                                std::string_view queried_host, std::string* error) {
  const auto bad = [error](std::string reason) -> std::optional<RedisSlotMap> {
    if (error != nullptr) *error = "CLUSTER SLOTS: " + std::move(reason);
    return std::nullopt;
  };
  if (reply.kind == RedisReply::Kind::error) return bad("refused: " + reply.str.substr(0, 200));
  if (reply.kind != RedisReply::Kind::array) return bad("expected an array of slot ranges");
  RedisSlotMap map;
  for (std::size_t i = 0; i < reply.elements.size(); ++i) {
    const RedisReply& range = reply.elements[i];
    const std::string where = "range " + std::to_string(i + 1);
    if (range.kind != RedisReply::Kind::array || range.elements.size() < 3 ||
        range.elements[0].kind != RedisReply::Kind::integer ||
        range.elements[1].kind != RedisReply::Kind::integer) {
      return bad(where + ": expected [first slot, last slot, master, replicas...]");
    }
    const long long first = range.elements[0].integer;
    const long long last = range.elements[1].integer;
    if (first < 0 || last < first || last >= cluster_slot_count) {
      return bad(where + ": slots " + std::to_string(first) + "-" + std::to_string(last) +
                 " are not within 0-16383");
    }
    RedisEndpoint master;
    const NodeOutcome outcome = read_node(range.elements[2], queried_host, master);
    if (outcome == NodeOutcome::malformed) return bad(where + ": malformed master [host, port, id]");
    for (std::size_t r = 3; r < range.elements.size(); ++r) {
      RedisEndpoint replica;
      const NodeOutcome replica_outcome = read_node(range.elements[r], queried_host, replica);
      if (replica_outcome == NodeOutcome::malformed) return bad(where + ": malformed replica");
      if (replica_outcome == NodeOutcome::ok) map.add_replica(replica);
    }
    if (outcome == NodeOutcome::unusable) continue;  // served by no master we can reach
    const std::uint16_t index = map.add_master(master);
    map.assign_range(static_cast<std::uint16_t>(first), static_cast<std::uint16_t>(last), index);
  }
  return map;
}

}  // namespace keygate::store
