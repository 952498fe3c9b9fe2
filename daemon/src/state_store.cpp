#include "state_store.hpp"

#include <cerrno>

#include <memtide/core/clock.hpp>

#include "state_file.hpp"

namespace memtide::daemon {

void StateStore::configure(const std::string& state_file) {
  path_ = resolve_state_path(state_file);
  const auto slash = path_.rfind('/');
  history_path_ = path_.empty()                ? ""
                  : slash == std::string::npos ? kHistoryFileName
                                               : path_.substr(0, slash + 1) + kHistoryFileName;
}

std::optional<report::History> StateStore::load_history() {
  if (history_path_.empty()) {
    return std::nullopt;
  }
  auto text = read_state_file(history_path_);
  if (!text) {
    if (text.error().sys_errno != ENOENT) {
      log_.warning("decision history not used, starting an empty one: " + text.error().to_string(),
                   {{"MEMTIDE_EVENT", "history-ignored"}});
    }
    return std::nullopt;
  }
  std::size_t skipped = 0;
  auto history = report::history_from_text(*text, report::kHistoryMaxBytes, &skipped);
  if (!history) {
    log_.warning("decision history in " + history_path_ +
                     " not used, starting an empty one: " + history.error().message,
                 {{"MEMTIDE_EVENT", "history-ignored"}});
    return std::nullopt;
  }
  log_.info("decision history restored from " + history_path_ + ": " +
                std::to_string(history->entries().size()) + " entries" +
                (skipped > 0 ? ", " + std::to_string(skipped) + " invalid ones skipped" : ""),
            {{"MEMTIDE_EVENT", "history-restored"}});
  return std::move(*history);
}

void StateStore::save_history(report::History& history, bool force) {
  const std::uint64_t now_usec = clock::monotonic_usec();
  constexpr std::uint64_t kEveryUsec = 60'000'000;
  if (history_path_.empty() || !history.changed() ||
      (!force && history_saved_usec_ != 0 && now_usec - history_saved_usec_ < kEveryUsec)) {
    return;
  }
  history_saved_usec_ = now_usec;
  if (auto s = save_state_file(history_path_, report::history_to_text(history)); !s) {
    ++figures_.errors_total["state"];
    if (const auto message = s.error().to_string(); history_error_.failed(message)) {
      log_.warning("cannot save the decision history: " + message,
                   {{"MEMTIDE_EVENT", "history-failed"}});
    }
    return;
  }
  history.mark_saved();
  history_error_.recovered();
}

std::optional<policy::PolicyState> StateStore::load() {
  if (path_.empty()) {
    return std::nullopt;
  }
  auto text = read_state_file(path_);
  if (!text) {
    if (text.error().sys_errno == ENOENT) {
      log_.info("no policy state at " + path_ + "; starting fresh",
                {{"MEMTIDE_EVENT", "state-absent"}});
    } else {
      log_.warning("policy state not used, starting fresh: " + text.error().to_string(),
                   {{"MEMTIDE_EVENT", "state-ignored"}});
    }
    return std::nullopt;
  }
  auto state = state_from_json(*text, clock::monotonic_ms(), clock::unix_ms());
  if (!state) {
    log_.warning("policy state in " + path_ + " not used, starting fresh: " + state.error().message,
                 {{"MEMTIDE_EVENT", "state-ignored"}});
    return std::nullopt;
  }
  log_.notice("policy state restored from " + path_ + ": " + std::to_string(state->vms.size()) +
                  " VM(s), " + std::to_string(state->alerts.size()) + " alert(s)",
              {{"MEMTIDE_EVENT", "state-restored"}});
  return std::move(*state);
}

void StateStore::save(const policy::PolicyState& state, bool changed, bool force) {
  if (path_.empty()) {
    return;
  }
  const std::uint64_t now_usec = clock::monotonic_usec();
  constexpr std::uint64_t kEveryUsec = 60'000'000;
  if (!force && !changed && saved_usec_ != 0 && now_usec - saved_usec_ < kEveryUsec) {
    return;
  }
  saved_usec_ = now_usec;
  const auto text = state_to_json(state, clock::monotonic_ms(), clock::unix_ms());
  if (auto s = save_state_file(path_, text); !s) {
    ++figures_.errors_total["state"];
    if (const auto message = s.error().to_string(); error_.failed(message)) {
      log_.warning("cannot save the policy state: " + message, {{"MEMTIDE_EVENT", "state-failed"}});
    }
    return;
  }
  error_.recovered();
}

}  // namespace memtide::daemon
