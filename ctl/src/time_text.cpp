#include "time_text.hpp"

namespace memtide::ctl {

std::optional<std::time_t> parse_utc(const std::string& text) {
  std::tm tm{};
  const char* end = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (end == nullptr) {
    return std::nullopt;
  }
  return timegm(&tm);
}

std::string age_text(std::time_t at, std::time_t now) {
  const long long d = static_cast<long long>(now) - static_cast<long long>(at);
  const long long a = d < 0 ? -d : d;
  const std::string amount = a < 120      ? std::to_string(a) + " s"
                             : a < 7200   ? std::to_string(a / 60) + " min"
                             : a < 172800 ? std::to_string(a / 3600) + " h"
                                          : std::to_string(a / 86400) + " d";
  return d < 0 ? "in " + amount : amount + " ago";
}

std::string time_text(const std::string& utc_text, bool utc) {
  const auto at = parse_utc(utc_text);
  if (utc || !at) {
    return utc_text;
  }
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  std::tm today{};
  localtime_r(&*at, &local);
  localtime_r(&now, &today);
  char buf[32];
  const bool same_day = local.tm_year == today.tm_year && local.tm_yday == today.tm_yday;
  std::strftime(buf, sizeof buf, same_day ? "%H:%M:%S" : "%Y-%m-%d %H:%M:%S", &local);
  return std::string(buf) + " (" + age_text(*at, now) + ")";
}

std::string clock_text(std::int64_t unix_ms, bool utc) {
  const std::time_t at = static_cast<std::time_t>(unix_ms / 1000);
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  std::tm today{};
  if (utc) {
    gmtime_r(&at, &tm);
    gmtime_r(&now, &today);
  } else {
    localtime_r(&at, &tm);
    localtime_r(&now, &today);
  }
  const bool same_day = tm.tm_year == today.tm_year && tm.tm_yday == today.tm_yday;
  char buf[32];
  std::strftime(buf, sizeof buf, same_day ? "%H:%M:%S" : "%Y-%m-%d %H:%M:%S", &tm);
  return std::string(buf) + (utc ? "Z" : "");
}

}  // namespace memtide::ctl
