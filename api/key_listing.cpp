#include "api/key_listing.hpp"

#include <charconv>
#include <chrono>

#include "api/query_string.hpp"
#include "core/hex.hpp"

namespace keygate::api {

namespace {

std::optional<store::KeyStatusFilter> status_filter(std::string_view text) {
  if (text == "active") return store::KeyStatusFilter::active;
  if (text == "inactive") return store::KeyStatusFilter::inactive;
  if (text == "expired") return store::KeyStatusFilter::expired;
  if (text == "revoked") return store::KeyStatusFilter::revoked;
  return std::nullopt;
}

Decoded<KeyListQuery> refuse(std::string field, std::string message) {
  Decoded<KeyListQuery> out;
  out.error = FieldError{std::move(field), std::move(message)};
  return out;
}

}  // namespace

Decoded<KeyListQuery> decode_list_query(std::string_view query, const Authority& who) {
  std::string unknown;
  if (!only_parameters(query, {"owner", "status", "limit", "cursor"}, unknown)) {
    return refuse(std::move(unknown), "unknown query parameter");
  }
  Decoded<KeyListQuery> out;
  store::KeyPageRequest& page = out.value.page;
  if (auto text = parameter(query, "owner")) {
    const std::size_t colon = text->find(':');
    if (colon == 0 || colon == std::string_view::npos || colon + 1 == text->size() || text->size() > 512) {
      return refuse("owner", "expected TYPE:ID like user:42");
    }
    page.owner = store::KeyOwner{std::string(text->substr(0, colon)), std::string(text->substr(colon + 1))};
  }
  if (who.role != AdminRole::operator_) {
    if (page.owner && !may_manage(who, page.owner->type, page.owner->id)) out.value.nothing_visible = true;
    page.owner = store::KeyOwner{who.owner_type, who.owner_id};
  }
  if (auto text = parameter(query, "status")) {
    page.status = status_filter(*text);
    if (!page.status) return refuse("status", "expected active, inactive, expired or revoked");
  }
  const std::optional<std::size_t> limit = page_limit(query);
  if (!limit) return refuse("limit", "expected 1 to 500");
  page.limit = *limit;
  if (auto text = parameter(query, "cursor")) {
    page.after = decode_key_cursor(*text);
    if (!page.after) return refuse("cursor", "not a cursor of this listing");
  }
  return out;
}

std::string encode_key_cursor(const store::KeyDetails& last) {
  const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(last.created_at.time_since_epoch());
  return std::to_string(micros.count()) + "." + last.record.id;
}

std::optional<store::KeyCursor> decode_key_cursor(std::string_view text) {
  const std::size_t dot = text.find('.');
  if (dot == 0 || dot == std::string_view::npos || dot > 19) return std::nullopt;
  store::KeyCursor cursor;
  const char* end = text.data() + dot;
  auto [stop, ec] = std::from_chars(text.data(), end, cursor.created_at_micros);
  if (ec != std::errc() || stop != end || cursor.created_at_micros < 0) return std::nullopt;
  const std::string_view id = text.substr(dot + 1);
  if (!core::is_uuid(id)) return std::nullopt;
  cursor.id = std::string(id);
  return cursor;
}

}  // namespace keygate::api
