#include <cerrno>
#include <future>
#include <optional>

#include <pthread.h>

#include <memtide/collectors/hypervisor_worker.hpp>

namespace memtide::collectors {

// State shared between the daemon and the worker thread. Held by shared_ptr from both sides so
// an abandoned worker never touches freed memory.
struct HypervisorWorker::Shared {
  std::unique_ptr<collectors::Hypervisor> hypervisor;
  std::mutex mutex;
  std::condition_variable wake;
  // Set by the daemon, taken by the worker. Running it makes the call and returns the closure
  // that hands the result over; the worker marks itself idle before handing over, so a caller
  // woken by the result can make its next call at once.
  std::function<std::function<void()>()> task;
  bool busy = false;
  bool stop = false;
  std::chrono::steady_clock::time_point started;
};

HypervisorWorker::HypervisorWorker(std::unique_ptr<collectors::Hypervisor> hypervisor)
    : shared_(std::make_shared<Shared>()) {
  shared_->hypervisor = std::move(hypervisor);
  std::thread([s = shared_] {
    pthread_setname_np(pthread_self(), "libvirt-calls");
    std::unique_lock lock(s->mutex);
    while (true) {
      s->wake.wait(lock, [&] { return s->stop || s->task != nullptr; });
      if (s->task == nullptr) {
        break;  // stop requested and nothing left to do
      }
      auto task = std::move(s->task);
      s->task = nullptr;
      lock.unlock();
      auto deliver = task();
      lock.lock();
      s->busy = false;
      s->wake.notify_all();
      lock.unlock();
      deliver();
      lock.lock();
    }
    s->hypervisor.reset();  // closes the connection on this thread
    s->wake.notify_all();
  }).detach();
}

HypervisorWorker::~HypervisorWorker() {
  std::unique_lock lock(shared_->mutex);
  shared_->stop = true;
  shared_->wake.notify_all();
  shared_->wake.wait_for(lock, std::chrono::seconds(2),
                         [&] { return !shared_->busy && shared_->hypervisor == nullptr; });
}

template <typename T>
HypervisorWorker::Pending<T> HypervisorWorker::start(
    std::function<Result<T>(collectors::Hypervisor&)> fn) {
  Pending<T> pending;
  auto promise = std::make_shared<std::promise<Result<T>>>();
  pending.answer = promise->get_future();
  pending.started = std::chrono::steady_clock::now();
  std::lock_guard lock(shared_->mutex);
  if (shared_->busy) {
    const auto running =
        std::chrono::duration_cast<std::chrono::seconds>(pending.started - shared_->started);
    pending.refused = Error{
        "", 0, EBUSY,
        "libvirt still busy with a call started " + std::to_string(running.count()) + "s ago"};
    return pending;
  }
  shared_->busy = true;
  shared_->started = pending.started;
  shared_->task = [promise, fn = std::move(fn), s = shared_.get()] {
    auto result = std::make_shared<Result<T>>(fn(*s->hypervisor));
    return std::function<void()>([promise, result] { promise->set_value(std::move(*result)); });
  };
  shared_->wake.notify_all();
  return pending;
}

template <typename T>
Result<T> HypervisorWorker::finish(Pending<T>& pending,
                                   std::chrono::steady_clock::time_point deadline) {
  if (pending.refused) {
    return *pending.refused;
  }
  if (pending.answer.wait_until(deadline) != std::future_status::ready) {
    const auto waited =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - pending.started);
    return Error{"", 0, ETIMEDOUT,
                 "libvirt did not answer within " + std::to_string(waited.count()) + " ms"};
  }
  return pending.answer.get();
}

template <typename T>
Result<T> HypervisorWorker::call(std::function<Result<T>(collectors::Hypervisor&)> fn,
                                 std::chrono::milliseconds timeout) {
  auto pending = start<T>(std::move(fn));
  return finish(pending, pending.started + timeout);
}

template Result<std::vector<VmSample>> HypervisorWorker::finish(
    Pending<std::vector<VmSample>>& pending, std::chrono::steady_clock::time_point deadline);

HypervisorWorker::Pending<std::vector<VmSample>> HypervisorWorker::start_collect(
    std::int64_t monotonic_ms, const ProcessReadHints& hints) {
  return start<std::vector<VmSample>>(
      [monotonic_ms, hints](collectors::Hypervisor& h) { return h.collect(monotonic_ms, hints); });
}

std::vector<ConnectionState> HypervisorWorker::connection_states() const {
  std::lock_guard lock(shared_->mutex);
  return shared_->hypervisor ? shared_->hypervisor->connection_states()
                             : std::vector<ConnectionState>{};
}

bool HypervisorWorker::wait_idle(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(shared_->mutex);
  return shared_->wake.wait_until(lock, deadline, [&] { return !shared_->busy; });
}

Result<std::vector<VmSample>> HypervisorWorker::collect(std::int64_t monotonic_ms,
                                                        std::chrono::milliseconds timeout,
                                                        const ProcessReadHints& hints) {
  return call<std::vector<VmSample>>(
      [monotonic_ms, hints](collectors::Hypervisor& h) { return h.collect(monotonic_ms, hints); },
      timeout);
}

Result<std::uint64_t> HypervisorWorker::set_memory_size(const std::string& uuid,
                                                        std::uint64_t target_bytes,
                                                        std::uint64_t floor_bytes,
                                                        std::chrono::milliseconds timeout) {
  return call<std::uint64_t>(
      [uuid, target_bytes, floor_bytes](collectors::Hypervisor& h) {
        return h.set_memory_size(uuid, target_bytes, floor_bytes);
      },
      timeout);
}

}  // namespace memtide::collectors
