#include "core/time_format.hpp"

namespace keygate::core {
namespace {

void append_digits(std::string& out, long long value, int width) {
  char digits[24];
  int n = 0;
  const bool negative = value < 0;
  unsigned long long v = negative ? 0ULL - static_cast<unsigned long long>(value)
                                  : static_cast<unsigned long long>(value);
  do {
    digits[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n < width) digits[n++] = '0';
  if (negative) out += '-';
  while (n > 0) out += digits[--n];
}

// "YYYY-MM-DDTHH:MM:SS" of the second that holds `t`.
void append_date_time(std::string& out, std::chrono::sys_seconds t) {
  using namespace std::chrono;
  const auto day = floor<days>(t);
  const year_month_day date{day};
  const hh_mm_ss time{t - day};
  append_digits(out, static_cast<int>(date.year()), 4);
  out += '-';
  append_digits(out, static_cast<unsigned>(date.month()), 2);
  out += '-';
  append_digits(out, static_cast<unsigned>(date.day()), 2);
  out += 'T';
  append_digits(out, time.hours().count(), 2);
  out += ':';
  append_digits(out, time.minutes().count(), 2);
  out += ':';
  append_digits(out, time.seconds().count(), 2);
}

}  // namespace

std::string format_utc_seconds(SystemTime t) {
  std::string out;
  append_date_time(out, std::chrono::floor<std::chrono::seconds>(t));
  out += 'Z';
  return out;
}

void append_utc_micros(std::string& out, SystemTime t) {
  using namespace std::chrono;
  const auto micros = floor<microseconds>(t);
  const auto second = floor<seconds>(micros);
  append_date_time(out, second);
  out += '.';
  append_digits(out, (micros - second).count(), 6);
  out += 'Z';
}

namespace {

// `width` decimal digits at text[at]; false if any is not a digit.
bool read_digits(std::string_view text, std::size_t at, std::size_t width, int& value) {
  if (at + width > text.size()) return false;
  value = 0;
  for (std::size_t i = at; i < at + width; ++i) {
    if (text[i] < '0' || text[i] > '9') return false;
    value = value * 10 + (text[i] - '0');
  }
  return true;
}

}  // namespace

std::optional<SystemTime> parse_rfc3339(std::string_view text) {
  using namespace std::chrono;
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  if (text.size() < 20 || !read_digits(text, 0, 4, y) || text[4] != '-' || !read_digits(text, 5, 2, mo) ||
      text[7] != '-' || !read_digits(text, 8, 2, d) || (text[10] != 'T' && text[10] != 't') ||
      !read_digits(text, 11, 2, h) || text[13] != ':' || !read_digits(text, 14, 2, mi) || text[16] != ':' ||
      !read_digits(text, 17, 2, s)) {
    return std::nullopt;
  }
  const year_month_day date{year{y}, month{static_cast<unsigned>(mo)}, day{static_cast<unsigned>(d)}};
  if (y < 1970 || !date.ok() || h > 23 || mi > 59 || s > 59) return std::nullopt;
  std::size_t at = 19;
  microseconds fraction{0};
  if (at < text.size() && text[at] == '.') {
    const std::size_t first = ++at;
    long long micros = 0;
    while (at < text.size() && text[at] >= '0' && text[at] <= '9') {
      if (at - first < 6) micros = micros * 10 + (text[at] - '0');
      ++at;
    }
    const std::size_t digits = at - first;
    if (digits == 0 || digits > 9) return std::nullopt;
    for (std::size_t i = digits; i < 6; ++i) micros *= 10;
    fraction = microseconds(micros);
  }
  minutes offset{0};
  if (at == text.size()) return std::nullopt;
  if (text[at] == 'Z' || text[at] == 'z') {
    ++at;
  } else if (text[at] == '+' || text[at] == '-') {
    int oh = 0, om = 0;
    if (!read_digits(text, at + 1, 2, oh) || at + 3 >= text.size() || text[at + 3] != ':' ||
        !read_digits(text, at + 4, 2, om) || oh > 23 || om > 59) {
      return std::nullopt;
    }
    offset = minutes(oh * 60 + om) * (text[at] == '-' ? -1 : 1);
    at += 6;
  } else {
    return std::nullopt;
  }
  if (at != text.size()) return std::nullopt;
  const sys_seconds local = sys_days{date} + hours(h) + minutes(mi) + seconds(s);
  return time_point_cast<SystemTime::duration>(local - offset + fraction);
}

}  // namespace keygate::core
