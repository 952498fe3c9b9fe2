// What memtided did and saw over time, per VM, for `memtidectl history`. It records each
// balloon command with the figures it was decided on and what became of it, and each alert as
// it fired and as it resolved. Between commands it samples each VM's figures (balloon, target,
// floor, maximum, usable) so a chart can show that time: at most once per kHistorySampleMs, and
// only when they moved (usable by kHistoryUsableStep of the maximum or more, anything else at
// all) or kHistoryHeartbeatMs passed.
//
// The history is bounded in bytes: past the budget, the oldest entries go first, whatever their
// VM. The daemon saves it beside the policy state. Times are wall-clock milliseconds (a history
// outlives reboots). It holds names from outside, so everything rendered from it goes through
// dump_json and the terminal's escaping.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <memtide/core/result.hpp>
#include <memtide/report/tick_report.hpp>

namespace memtide::report {

// About 20,000 entries of 200 bytes (a command's reason adds its length). A steady VM takes 6
// samples an hour: 16 of them fill it in about 9 days; 1,000 busy ones (a sample a minute each)
// in about 20 minutes.
inline constexpr std::size_t kHistoryMaxBytes = std::size_t{4} << 20;
inline constexpr std::int64_t kHistorySampleMs = 60'000;
inline constexpr std::int64_t kHistoryHeartbeatMs = 600'000;
inline constexpr double kHistoryUsableStep = 1.0 / 32;

struct HistoryEntry {
  enum class Kind : std::uint8_t { sample, command, alert_fired, alert_resolved };
  Kind kind = Kind::sample;
  std::int64_t unix_ms = 0;  // the collection time of the snapshot it was decided on
  std::string vm;            // the VM's name; "" for a host alert
  // sample and command: the VM's figures then (a command's balloon_bytes is its "from").
  std::uint64_t balloon_bytes = 0;
  std::uint64_t max_bytes = 0;
  std::uint64_t floor_bytes = 0;
  std::optional<std::uint64_t> usable_bytes;  // none: the guest reported none
  // sample: the balloon size memtide last asked for (none: never); command: its "to".
  std::optional<std::uint64_t> target_bytes;
  std::string what;    // command: its cause; alert: its name
  std::string detail;  // command: its reason; alert: its summary
  std::string result;  // command: its outcome ("applied", "failed: ..."); alert: its severity
  // What the entry takes in memory, counted against the budget.
  std::size_t bytes() const;
  friend bool operator==(const HistoryEntry&, const HistoryEntry&) = default;
};

const char* to_string(HistoryEntry::Kind kind);

// The entry as the control protocol and the history file carry it.
nlohmann::json to_json(const HistoryEntry& entry);
// An entry from JSON written by to_json; an error naming what is wrong. Text fields are cut to
// kMaxHistoryTextBytes (on a character boundary).
Result<HistoryEntry> history_entry_from_json(const nlohmann::json& j);
inline constexpr std::size_t kMaxHistoryTextBytes = 4096;

class History {
 public:
  explicit History(std::size_t max_bytes = kHistoryMaxBytes) : max_bytes_(max_bytes) {}

  // Records a tick: `commands` (those decided on r.snapshot, with what became of them), the
  // alerts that fired or resolved since the last call, and a sample of each VM whose last entry
  // is kHistorySampleMs old or more. Needs r.snapshot and r.config; a report without a plan
  // records samples with no usable figure.
  void record(const TickReport& r, const std::vector<RecentCommand>& commands);

  // Adds one entry (loading a saved history; tests), oldest first.
  void add(HistoryEntry entry);

  // Entries from `since_unix_ms` on, oldest first: those of VMs whose name matches one of
  // `vm_globs` (fnmatch; every VM when empty) and every host alert.
  std::vector<const HistoryEntry*> select(const std::vector<std::string>& vm_globs,
                                          std::int64_t since_unix_ms) const;

  const std::deque<HistoryEntry>& entries() const { return entries_; }
  std::size_t bytes() const { return bytes_; }
  std::size_t max_bytes() const { return max_bytes_; }
  // Entries added since the last mark_saved() (what a save would add).
  bool changed() const { return changed_; }
  void mark_saved() { changed_ = false; }

 private:
  void sample(const TickReport& r, std::size_t index, const std::set<std::string>& commanded);
  void record_alerts(const TickReport& r);
  // Whether `now` differs enough from `last` (the VM's newest figures) to be sampled.
  static bool moved(const HistoryEntry& last, const HistoryEntry& now);

  std::size_t max_bytes_;
  std::size_t bytes_ = 0;
  std::deque<HistoryEntry> entries_;  // oldest first
  bool changed_ = false;
  // By VM name: its newest sample or command.
  std::unordered_map<std::string, HistoryEntry> last_figures_;
  // Alerts firing at the last record(): (name, subject) -> summary and severity.
  std::map<std::pair<std::string, std::string>, policy::Alert> firing_;
};

// The whole history as the daemon saves it: {"format": 1, "entries": [...]}.
std::string history_to_text(const History& history);
// A saved history; entries that are not valid are skipped and counted in `skipped`. An error
// when the text is not a history at all.
Result<History> history_from_text(const std::string& text, std::size_t max_bytes,
                                  std::size_t* skipped = nullptr);

}  // namespace memtide::report
