// The /metrics page: everything memtide knows, in the Prometheus text exposition format 0.0.4.
// Rendered on the loop thread once per tick from the TickReport (render_metrics is a pure
// function of it); the HTTP server only hands out the last rendered page, so a scrape never waits
// on the loop and never sees a half-updated tick. Every metric is documented in docs/metrics.md.
#pragma once

#include <string>
#include <string_view>

#include <memtide/report/tick_report.hpp>

namespace memtide::report {

std::string render_metrics(const TickReport& report);

// A label value escaped for the text format (backslash, double quote and newline).
std::string escape_label_value(std::string_view value);

}  // namespace memtide::report
