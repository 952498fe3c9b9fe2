// The HTTP endpoint for Prometheus: GET /metrics returns the page published last. It runs on a
// thread of its own (epoll), never in the event loop, and only hands out pages rendered by
// their owner. Pages are rendered on demand: the owner marks the page stale when its figures
// change (invalidate(), once a tick) and renders only when a scrape asks for a stale page
// (want_page), so a daemon nobody scrapes renders nothing. The scrape waits for the new page at
// most kPageWait (the owner may be in the middle of a tick), then gets the last page rendered.
//
// Clients are untrusted, and a scrape must get through whatever others do:
// - a request must arrive whole (request line and headers, at most kMaxHttpRequestBytes) within
//   kRequestDeadline of the connection's start, however it trickles in; a response must be
//   taken within kResponseDeadline;
// - at most kMaxHttpConnections connections, and kMaxHttpPerAddress from one IPv4 address or
//   one IPv6 /64;
// - when either limit is reached, a new connection takes the place of a finished response (sent
//   whole, its peer's close awaited), else of the oldest request still arriving, else of the
//   response its peer has stopped taking with the least sent (from that address, or from any):
//   clients that hold connections without finishing a request or reading their answer only
//   push each other out, so a scrape, which sends its request at once and reads its answer, is
//   served. Requests waiting for their page and responses being taken are never pushed out;
// - a client that shuts down its side after a whole request (a half-close) is still answered;
//   input after the request is discarded, at most kMaxHttpRequestBytes a turn, and a client
//   that sends more than 4 x kMaxHttpRequestBytes of it is dropped.
// One request per connection (responses say "Connection: close").
//
// A page is held as published until a scrape asks for it gzipped (Prometheus always does); from
// then on only the gzipped page is held (at 1,000 VMs 107 kB instead of 1.47 MB), and a scrape
// that wants it plain gets it inflated for itself.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include <sys/socket.h>

#include <memtide/core/result.hpp>

namespace memtide::daemon {

inline constexpr std::size_t kMaxHttpConnections = 512;
inline constexpr std::size_t kMaxHttpPerAddress = 64;
inline constexpr std::size_t kMaxHttpRequestBytes = std::size_t{16} * 1024;
inline constexpr std::chrono::seconds kRequestDeadline{5};
inline constexpr std::chrono::seconds kResponseDeadline{30};
inline constexpr std::chrono::milliseconds kPageWait{1000};

// A published page in the forms the server holds: plain, gzipped, or both for a moment. At least
// one of them is held.
struct HeldPage {
  std::shared_ptr<const std::string> plain;    // null once the gzipped page is held
  std::shared_ptr<const std::string> gzipped;  // null until a scrape asked for gzip
  std::uint64_t number = 0;                    // which publication (1 the first page)
  std::size_t plain_bytes = 0;                 // the plain page's length, held in either form
  bool stale = false;                          // the figures behind it changed since
};

// The unit of kMaxHttpPerAddress a peer belongs to: its IPv4 address ("127.0.0.1", also for an
// IPv4-mapped IPv6 peer), or its IPv6 /64 ("2001:db8:1:2::/64"): one IPv6 host commonly holds a
// whole /64, so a share per IPv6 address would bound nothing. "?" for other families.
std::string address_share(const sockaddr_storage& peer);

// "127.0.0.1:9847", "[::1]:9847", "0.0.0.0:9847" or "[::]:9847" (port 0 picks a free port).
Result<int> listen_on(const std::string& address);

class MetricsServer {
 public:
  // Serves `first_page` on `listen_fd`, a bound and listening TCP socket (from listen_on(), or
  // passed by systemd socket activation); takes ownership of it. The page is in place before
  // the first connection is accepted (with socket activation one is already waiting).
  // `want_page` is called on the server's thread when a scrape finds the page stale, once per
  // invalidation: it must only signal the owner (it may not render there).
  static Result<std::unique_ptr<MetricsServer>> start(int listen_fd,
                                                      std::shared_ptr<const std::string> first_page,
                                                      std::function<void()> want_page);
  ~MetricsServer();  // stops the thread, closes every connection and the listening socket
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Makes `page` the body of every later GET /metrics, and answers the scrapes waiting for it.
  // Thread-safe; cheap (no copy of the page).
  void publish(std::shared_ptr<const std::string> page);
  // The figures behind the page changed: the next scrape asks for a new page. Thread-safe.
  void invalidate();
  std::uint16_t port() const { return port_; }
  const std::string& description() const { return description_; }  // "127.0.0.1:9847"

 private:
  MetricsServer() = default;
  void run();
  // The page published last, in the forms held.
  HeldPage page() const;
  // Holds `gzipped` instead of publication `number`'s plain page, if that is still the page.
  void hold_gzipped(std::uint64_t number, std::shared_ptr<const std::string> gzipped);

  int listen_fd_ = -1;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;       // eventfd: stop
  int published_fd_ = -1;  // eventfd: a page was published
  std::function<void()> want_page_;
  mutable std::mutex mutex_;
  HeldPage page_;  // guarded by mutex_
  std::uint16_t port_ = 0;
  std::string description_;
  std::thread thread_;
};

}  // namespace memtide::daemon
