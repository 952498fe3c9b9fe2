#include <algorithm>
#include <string_view>

#include <fnmatch.h>

#include <memtide/core/text.hpp>
#include <memtide/policy/classes.hpp>
#include <memtide/policy/coexist.hpp>
#include <memtide/report/history.hpp>
#include <memtide/report/json_text.hpp>
#include <memtide/report/snapshot_json.hpp>

namespace memtide::report {

namespace {

using EntryKind = HistoryEntry::Kind;

constexpr int kHistoryFormat = 1;

std::size_t heap_bytes(const std::string& s) {
  // Short strings live inside the object (libstdc++'s small-string buffer holds 15 bytes).
  return s.capacity() > 15 ? s.capacity() + 1 : 0;
}

nlohmann::json optional_json(const std::optional<std::uint64_t>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json();
}

std::optional<EntryKind> kind_from(const std::string& s) {
  for (const EntryKind k :
       {EntryKind::sample, EntryKind::command, EntryKind::alert_fired, EntryKind::alert_resolved}) {
    if (s == to_string(k)) {
      return k;
    }
  }
  return std::nullopt;
}

// The usable memory decide() judged the VM by, when it got that far; else what the guest
// reported (nothing for a guest without statistics).
std::optional<std::uint64_t> usable_of(const TickReport& r, std::size_t index) {
  using OKind = policy::Outcome::Kind;
  const auto* outcome = outcome_of(r, index);
  const bool judged = outcome != nullptr && outcome->kind != OKind::unmanaged &&
                      outcome->kind != OKind::not_running &&
                      outcome->kind != OKind::no_statistics &&
                      outcome->kind != OKind::no_usable_figure;
  if (judged) {
    return outcome->usable_bytes;
  }
  return r.snapshot->vms[index].guest.usable_bytes;
}

}  // namespace

const char* to_string(HistoryEntry::Kind kind) {
  switch (kind) {
    case EntryKind::sample:
      return "sample";
    case EntryKind::command:
      return "command";
    case EntryKind::alert_fired:
      return "alert-fired";
    case EntryKind::alert_resolved:
      return "alert-resolved";
  }
  return "sample";
}

std::size_t HistoryEntry::bytes() const {
  // The deque holds the entry itself; its strings may hold more on the heap.
  return sizeof(HistoryEntry) + heap_bytes(vm) + heap_bytes(what) + heap_bytes(detail) +
         heap_bytes(result);
}

nlohmann::json to_json(const HistoryEntry& e) {
  nlohmann::json j = {{"kind", to_string(e.kind)},
                      {"at", format_utc(e.unix_ms)},
                      {"unix_ms", e.unix_ms},
                      {"vm", e.vm}};
  if (e.kind == EntryKind::sample || e.kind == EntryKind::command) {
    j["balloon_bytes"] = e.balloon_bytes;
    j["target_bytes"] = optional_json(e.target_bytes);
    j["floor_bytes"] = e.floor_bytes;
    j["max_bytes"] = e.max_bytes;
    j["usable_bytes"] = optional_json(e.usable_bytes);
  }
  if (e.kind != EntryKind::sample) {
    j["what"] = e.what;
    j["detail"] = e.detail;
    j["result"] = e.result;
  }
  return j;
}

Result<HistoryEntry> history_entry_from_json(const nlohmann::json& j) {
  if (!j.is_object()) {
    return Error{"", 0, 0, "an entry is an object"};
  }
  HistoryEntry e;
  const auto kind = j.contains("kind") && j["kind"].is_string()
                        ? kind_from(j["kind"].get<std::string>())
                        : std::nullopt;
  if (!kind) {
    return Error{"", 0, 0,
                 "an entry needs a \"kind\" of sample, command, alert-fired or "
                 "alert-resolved"};
  }
  e.kind = *kind;
  if (!j.contains("unix_ms") || !j["unix_ms"].is_number_integer()) {
    return Error{"", 0, 0, "an entry needs \"unix_ms\", an integer"};
  }
  e.unix_ms = j["unix_ms"].get<std::int64_t>();
  const auto text = [&j](const char* key) {
    return j.contains(key) && j[key].is_string()
               ? shorten_utf8(j[key].get<std::string>(), kMaxHistoryTextBytes)
               : std::string();
  };
  const auto size = [&j](const char* key) -> std::optional<std::uint64_t> {
    return j.contains(key) && j[key].is_number_unsigned()
               ? std::optional<std::uint64_t>(j[key].get<std::uint64_t>())
               : std::nullopt;
  };
  e.vm = text("vm");
  e.what = text("what");
  e.detail = text("detail");
  e.result = text("result");
  if (e.kind == EntryKind::sample || e.kind == EntryKind::command) {
    const auto balloon = size("balloon_bytes");
    const auto max = size("max_bytes");
    if (!balloon || !max || e.vm.empty()) {
      return Error{"", 0, 0,
                   "a sample or command needs \"vm\", \"balloon_bytes\" and \"max_bytes\""};
    }
    e.balloon_bytes = *balloon;
    e.max_bytes = *max;
    e.floor_bytes = size("floor_bytes").value_or(0);
    e.usable_bytes = size("usable_bytes");
    e.target_bytes = size("target_bytes");
  }
  return e;
}

void History::add(HistoryEntry entry) {
  bytes_ += entry.bytes();
  if (entry.kind == EntryKind::sample || entry.kind == EntryKind::command) {
    last_figures_[entry.vm] = entry;
  }
  entries_.push_back(std::move(entry));
  changed_ = true;
  while (bytes_ > max_bytes_ && !entries_.empty()) {
    bytes_ -= entries_.front().bytes();
    entries_.pop_front();
  }
}

void History::record(const TickReport& r, const std::vector<RecentCommand>& commands) {
  if (r.snapshot == nullptr || r.config == nullptr) {
    return;
  }
  const Snapshot& s = *r.snapshot;
  std::map<std::string, std::size_t> index;  // VM UUID -> its place in the snapshot
  for (std::size_t i = 0; i < s.vms.size(); ++i) {
    index.emplace(s.vms[i].key(), i);
  }
  std::set<std::string> commanded;
  for (const auto& c : commands) {
    HistoryEntry e;
    e.kind = EntryKind::command;
    e.unix_ms = c.unix_ms;
    e.vm = c.change.vm;
    e.balloon_bytes = c.change.from_bytes;
    e.target_bytes = c.change.to_bytes;
    e.floor_bytes = c.change.floor_bytes;
    if (const auto it = index.find(c.change.key()); it != index.end()) {
      e.max_bytes = s.vms[it->second].max_bytes;
      e.usable_bytes = usable_of(r, it->second);
    }
    e.what = policy::to_string(c.change.cause);
    e.detail = c.change.reason;
    e.result = c.outcome;
    commanded.insert(e.vm);
    add(std::move(e));
  }
  for (std::size_t i = 0; i < s.vms.size(); ++i) {
    sample(r, i, commanded);
  }
  // VMs gone from the snapshot need no sampling clock any more. Only when there are more clocks
  // than VMs (a VM that went and one that came leave one more clock after the new one's first
  // sample); names sorted once, so a host of thousands of VMs never compares every pair.
  if (last_figures_.size() > s.vms.size()) {
    std::vector<std::string_view> names;
    names.reserve(s.vms.size());
    for (const auto& vm : s.vms) {
      names.emplace_back(vm.name);
    }
    std::sort(names.begin(), names.end());
    std::erase_if(last_figures_, [&names](const auto& kv) {
      return !std::binary_search(names.begin(), names.end(), std::string_view(kv.first));
    });
  }
  record_alerts(r);
}

bool History::moved(const HistoryEntry& last, const HistoryEntry& now) {
  if (now.unix_ms - last.unix_ms >= kHistoryHeartbeatMs) {
    return true;
  }
  // After a command, its target is the balloon's size to compare with.
  const std::uint64_t balloon = last.kind == EntryKind::command
                                    ? last.target_bytes.value_or(last.balloon_bytes)
                                    : last.balloon_bytes;
  if (now.balloon_bytes != balloon || now.floor_bytes != last.floor_bytes ||
      now.max_bytes != last.max_bytes ||
      now.target_bytes.has_value() != last.target_bytes.has_value() ||
      now.usable_bytes.has_value() != last.usable_bytes.has_value()) {
    return true;
  }
  if (!now.usable_bytes) {
    return false;
  }
  const std::uint64_t a = *now.usable_bytes;
  const std::uint64_t b = *last.usable_bytes;
  return static_cast<double>(a > b ? a - b : b - a) >=
         kHistoryUsableStep * static_cast<double>(now.max_bytes);
}

void History::sample(const TickReport& r, std::size_t index,
                     const std::set<std::string>& commanded) {
  const Snapshot& s = *r.snapshot;
  const VmSample& vm = s.vms[index];
  const auto last = last_figures_.find(vm.name);
  if (commanded.contains(vm.name) ||
      (last != last_figures_.end() &&
       s.collected_at_unix_ms - last->second.unix_ms < kHistorySampleMs)) {
    return;
  }
  HistoryEntry e;
  e.kind = EntryKind::sample;
  e.unix_ms = s.collected_at_unix_ms;
  e.vm = vm.name;
  e.balloon_bytes = vm.current_bytes;
  e.max_bytes = vm.max_bytes;
  // The floor decide() worked out (judging it again for each VM would cost more than the tick's
  // decision); without a plan of these VMs, judged here.
  if (const auto* outcome = outcome_of(r, index)) {
    e.floor_bytes = outcome->floor_bytes;
  } else {
    e.floor_bytes =
        policy::effective_balloon(
            vm, *r.config,
            policy::yielding_to(s.other_managers, policy::Controls::balloons, *r.config))
            .floor_bytes;
  }
  e.usable_bytes = usable_of(r, index);
  e.target_bytes = balloon_target_of(r, vm);
  if (last == last_figures_.end() || moved(last->second, e)) {
    add(std::move(e));
  }
}

void History::record_alerts(const TickReport& r) {
  std::map<std::pair<std::string, std::string>, policy::Alert> now;
  for (const auto& a : firing_alerts(r)) {
    now.emplace(std::make_pair(a.name, a.subject), a);
  }
  const auto entry = [&r](const policy::Alert& a, EntryKind kind) {
    HistoryEntry e;
    e.kind = kind;
    e.unix_ms = r.snapshot->collected_at_unix_ms;
    e.vm = a.subject;
    e.what = a.name;
    e.detail = a.summary;
    e.result = policy::to_string(a.severity);
    return e;
  };
  for (const auto& [key, alert] : firing_) {
    if (!now.contains(key)) {
      add(entry(alert, EntryKind::alert_resolved));
    }
  }
  for (const auto& [key, alert] : now) {
    if (!firing_.contains(key)) {
      add(entry(alert, EntryKind::alert_fired));
    }
  }
  firing_ = std::move(now);
}

std::vector<const HistoryEntry*> History::select(const std::vector<std::string>& vm_globs,
                                                 std::int64_t since_unix_ms) const {
  std::vector<const HistoryEntry*> out;
  const auto wanted = [&vm_globs](const HistoryEntry& e) {
    return e.vm.empty() || vm_globs.empty() ||
           std::any_of(vm_globs.begin(), vm_globs.end(), [&e](const std::string& g) {
             return fnmatch(g.c_str(), e.vm.c_str(), 0) == 0;
           });
  };
  // Entries are in time order: start at the first one not older than `since`.
  const auto first = std::partition_point(
      entries_.begin(), entries_.end(),
      [since_unix_ms](const HistoryEntry& e) { return e.unix_ms < since_unix_ms; });
  for (auto it = first; it != entries_.end(); ++it) {
    if (wanted(*it)) {
      out.push_back(&*it);
    }
  }
  return out;
}

std::string history_to_text(const History& history) {
  nlohmann::json entries = nlohmann::json::array();
  for (const auto& e : history.entries()) {
    entries.push_back(to_json(e));
  }
  return dump_json(nlohmann::json{{"format", kHistoryFormat}, {"entries", std::move(entries)}});
}

Result<History> history_from_text(const std::string& text, std::size_t max_bytes,
                                  std::size_t* skipped) {
  constexpr std::size_t kMaxNesting = 8;  // {"entries": [{...}]}
  if (json_nesting_exceeds(text, kMaxNesting)) {
    return Error{"", 0, 0, "not a decision history: nested too deep"};
  }
  const auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return Error{"", 0, 0, "not a decision history: not a JSON object"};
  }
  if (!j.contains("format") || j["format"] != kHistoryFormat) {
    return Error{"", 0, 0, "not a decision history of format " + std::to_string(kHistoryFormat)};
  }
  if (!j.contains("entries") || !j["entries"].is_array()) {
    return Error{"", 0, 0, "a decision history needs \"entries\", an array"};
  }
  History history(max_bytes);
  std::size_t bad = 0;
  std::int64_t newest = INT64_MIN;
  for (const auto& item : j["entries"]) {
    auto e = history_entry_from_json(item);
    // Out of order entries would break select()'s search: they are skipped too.
    if (!e || e->unix_ms < newest) {
      ++bad;
      continue;
    }
    newest = e->unix_ms;
    history.add(std::move(*e));
  }
  if (skipped != nullptr) {
    *skipped = bad;
  }
  history.mark_saved();
  return history;
}

}  // namespace memtide::report
