#include "recorder.hpp"

namespace memtide::daemon {

void Recorder::configure(const config::RecordSection& record) {
  if (record.path.empty()) {
    writer_.reset();
  } else if (!writer_ || writer_->settings() != record) {
    writer_ = std::make_unique<trace::TraceWriter>(record);
    error_.recovered();
  }
}

void Recorder::append(const Snapshot& decided_on) {
  if (!writer_) {
    return;
  }
  if (auto s = writer_->append(decided_on); !s) {
    ++figures_.errors_total["record"];
    if (const auto message = s.error().to_string(); error_.failed(message)) {
      log_.warning("cannot record the snapshot: " + message, {{"MEMTIDE_EVENT", "record-failed"}});
    }
  } else if (error_.recovered()) {
    log_.notice("recording works again; torn lines closed off so far: " +
                    std::to_string(writer_->torn_lines()),
                {{"MEMTIDE_EVENT", "record-recovered"}});
  }
}

}  // namespace memtide::daemon
