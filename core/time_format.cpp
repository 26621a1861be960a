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

}  // namespace keygate::core
