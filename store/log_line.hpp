#pragma once
// store/'s own log lines (connection state changes, writer and ledger trouble), in keygate's log
// format: one JSON object per line on stderr, {"ts":"...Z","level":"warn","msg":"...",...}.
// Rare by nature (state changes, not requests), so written synchronously. Never pass a key, a
// DSN with a password, or a credential here.
#include <initializer_list>
#include <string_view>
#include <utility>

namespace keygate::store {

using LogDetail = std::pair<std::string_view, std::string_view>;

void write_log_line(std::string_view level, std::string_view msg,
                    std::initializer_list<LogDetail> details = {});

}  // namespace keygate::store
