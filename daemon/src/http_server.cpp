#include "http_server.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <functional>
#include <map>
#include <optional>
#include <string_view>
#include <tuple>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "gzip.hpp"

namespace memtide::daemon {

namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kMetricsType = "text/plain; version=0.0.4; charset=utf-8";
constexpr const char* kIndex =
    "memtided: memory-overcommit daemon for KVM hosts. Metrics: /metrics\n";
// How often deadlines are checked when nothing else happens.
constexpr int kTickMs = 200;

std::string describe_socket(int fd, std::uint16_t* port) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return "?";
  }
  char host[INET6_ADDRSTRLEN] = "?";
  if (addr.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    *port = ntohs(a->sin_port);
    return std::string(host) + ":" + std::to_string(*port);
  }
  if (addr.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    *port = ntohs(a->sin6_port);
    return "[" + std::string(host) + "]:" + std::to_string(*port);
  }
  return "?";
}

}  // namespace

std::string address_share(const sockaddr_storage& addr) {
  char host[INET6_ADDRSTRLEN] = "?";
  if (addr.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&addr)->sin_addr, host, sizeof host);
    return host;
  }
  if (addr.ss_family != AF_INET6) {
    return host;
  }
  in6_addr a = reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_addr;
  if (IN6_IS_ADDR_V4MAPPED(&a)) {
    inet_ntop(AF_INET, &a.s6_addr[12], host, sizeof host);
    return host;
  }
  std::fill(std::begin(a.s6_addr) + 8, std::end(a.s6_addr), 0);
  inet_ntop(AF_INET6, &a, host, sizeof host);
  return std::string(host) + "/64";
}

namespace {

std::string peer_address(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  return getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0 ? address_share(addr) : "?";
}

struct Response {
  int status = 200;
  const char* reason = "OK";
  const char* type = "text/plain; charset=utf-8";
  std::shared_ptr<const std::string> body;
  bool allow_header = false;
  bool metrics = false;  // the metrics page: may go out gzipped, and says Vary: Accept-Encoding
  bool gzipped = false;  // body is gzip (Content-Encoding: gzip)
};

std::shared_ptr<const std::string> text(const char* body) {
  return std::make_shared<const std::string>(body);
}

// The answer to a request whose head (request line and headers) is `head`; for the metrics
// page without its body, which is the caller's to choose in the form the request wants.
Response answer(std::string_view head, bool& head_only) {
  head_only = false;
  const auto line_end = head.find("\r\n");
  const std::string_view line = head.substr(0, line_end);
  const auto sp1 = line.find(' ');
  const auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  const bool printable = std::all_of(head.begin(), head.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u >= 0x20 || c == '\r' || c == '\n' || c == '\t';
  });
  if (!printable || sp2 == std::string_view::npos ||
      line.substr(sp2 + 1).rfind("HTTP/1.", 0) != 0) {
    return {400, "Bad Request", "text/plain; charset=utf-8", text("bad request\n")};
  }
  const std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  target = target.substr(0, target.find('?'));
  if (method != "GET" && method != "HEAD") {
    return {405, "Method Not Allowed", "text/plain; charset=utf-8", text("only GET and HEAD\n"),
            true};
  }
  head_only = method == "HEAD";
  if (target == "/metrics") {
    return {200, "OK", kMetricsType, nullptr, false, true};
  }
  if (target == "/") {
    return {200, "OK", "text/plain; charset=utf-8", text(kIndex)};
  }
  return {404, "Not Found", "text/plain; charset=utf-8", text("not found; try /metrics\n")};
}

// Input a connection may send after its request (a body, or a flood) before it is dropped: one
// request per connection, so none of it is read; and what one event reads of it.
constexpr std::size_t kMaxDiscardedBytes = 4 * kMaxHttpRequestBytes;
constexpr std::size_t kReadPerEvent = kMaxHttpRequestBytes;

struct Connection {
  std::string address;
  Clock::time_point started;
  std::string in;
  // waiting: a whole request for a stale page, until a new one is published or kPageWait passed.
  enum class State { reading, waiting, answering, closing } state = State::reading;
  Clock::time_point waiting_since{};
  Clock::time_point answered{};
  Clock::time_point progress{};             // when the response last moved (answered, or sent)
  std::string head;                         // status line and headers
  std::shared_ptr<const std::string> body;  // null for HEAD
  std::size_t sent = 0;                     // of head + body
  std::size_t discarded = 0;                // input read after the request
  bool blocked = false;    // answering, and the socket took no more: the peer is not reading
  bool peer_done = false;  // the peer shut down its side after a whole request (a half-close)
};

// The server's connections: admission (with eviction when full), reading a request, answering
// it, and closing. Runs on the server thread only.
class ConnectionTable {
 public:
  // The page as held; holding a publication's page gzipped instead; and the request for a new
  // page.
  using Page = std::function<HeldPage()>;
  using HoldGzipped = std::function<void(std::uint64_t, std::shared_ptr<const std::string>)>;
  ConnectionTable(int epoll_fd, Page page, HoldGzipped hold_gzipped,
                  std::function<void()> want_page)
      : epoll_fd_(epoll_fd),
        page_(std::move(page)),
        hold_gzipped_(std::move(hold_gzipped)),
        want_page_(std::move(want_page)) {}
  ~ConnectionTable() {
    for (const auto& [fd, c] : connections_) {
      close(fd);
    }
  }
  ConnectionTable(const ConnectionTable&) = delete;
  ConnectionTable& operator=(const ConnectionTable&) = delete;

  // Takes a new connection, making room if every slot (or its address's share) is taken.
  void admit(int fd);
  bool empty() const { return connections_.empty(); }
  // Handles epoll's `what` on connection `fd`.
  void on_event(int fd, std::uint32_t what) {
    const auto it = connections_.find(fd);
    if (it == connections_.end()) {
      return;
    }
    if (it->second.state == Connection::State::answering && (what & EPOLLOUT) != 0) {
      send_more(fd, it->second);
    } else if ((what & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) {
      on_readable(fd, it->second);
    }
  }
  // Drops the connections past their request or response deadline, and answers those that
  // waited kPageWait for a new page with the last one.
  void expire();
  // A page was published: every request waiting is answered with it.
  void on_published();

 private:
  void drop(int fd);
  // The connection a new one takes the place of, from `address` ("" any); -1 if none may go.
  // First a finished response (all sent, only the peer's close awaited), oldest first; then a
  // request still arriving, oldest first; then a response its peer has stopped taking, least
  // progress first. A request waiting for its page and a response that moves are never pushed
  // out: whoever holds slots without reading or finishing only pushes itself out, and a scrape,
  // which sends its request at once and reads its answer, is served.
  int victim(const std::string& address) const;
  // Watches `fd` for `events`, and for the peer's end of input until it has come.
  void watch(int fd, const Connection& c, std::uint32_t events);
  // Sends what the socket takes; after the whole response, half-closes and waits for the peer
  // to close (closing with unread input would reset the connection and could lose the reply).
  void send_more(int fd, Connection& c);
  // Answers with `r`; for HEAD without a body at hand, Content-Length is `head_length` (left out
  // when nullopt: the page's form is not held and is not made only to be measured).
  void respond(int fd, Connection& c, const Response& r, bool head_only,
               std::optional<std::size_t> head_length = std::nullopt);
  void on_readable(int fd, Connection& c);
  // Answers the whole request in c.in (its head ends at `head_end`) with the page as it is.
  void answer_request(int fd, Connection& c, std::size_t head_end);
  // Sets r's body to the page held, gzipped if `gzip_it` (and r.gzipped then), else plain.
  void set_page_body(Response& r, bool gzip_it);
  // `page` gzipped: compressed here, on the server's thread, for the first request that asks for
  // gzip, and then held instead of the plain page, so that the event loop never pays for it and
  // every scrape of one page shares it. Null only if no page is held.
  std::shared_ptr<const std::string> gzipped_page(const HeldPage& page);
  // `page` plain: inflated for a request once only the gzipped page is held, and shared by every
  // request answered while one is still being sent (500 plain scrapes at once hold one page, not
  // 500). Null only if no page is held.
  std::shared_ptr<const std::string> plain_page(const HeldPage& page);

  int epoll_fd_;
  Page page_;
  HoldGzipped hold_gzipped_;
  std::function<void()> want_page_;
  bool asked_ = false;  // want_page_ was called and no page was published since
  std::weak_ptr<const std::string> inflated_;  // the plain page of publication inflated_number_
  std::uint64_t inflated_number_ = 0;
  std::map<int, Connection> connections_;  // by fd
  std::map<std::string, std::size_t> per_address_;
};

void ConnectionTable::drop(int fd) {
  const auto it = connections_.find(fd);
  if (it == connections_.end()) {
    return;
  }
  if (--per_address_[it->second.address] == 0) {
    per_address_.erase(it->second.address);
  }
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  close(fd);
  connections_.erase(it);
}

int ConnectionTable::victim(const std::string& address) const {
  // (rank, progress measure, time): the smallest goes.
  using Key = std::tuple<int, std::size_t, Clock::time_point>;
  int chosen = -1;
  Key chosen_key{};
  for (const auto& [fd, c] : connections_) {
    if (!address.empty() && c.address != address) {
      continue;
    }
    Key key;
    if (c.state == Connection::State::closing) {
      key = {0, 0, c.progress};
    } else if (c.state == Connection::State::reading) {
      key = {1, 0, c.started};
    } else if (c.state == Connection::State::answering && c.blocked) {
      key = {2, c.sent, c.progress};
    } else {
      continue;
    }
    if (chosen < 0 || key < chosen_key) {
      chosen = fd;
      chosen_key = key;
    }
  }
  return chosen;
}

void ConnectionTable::watch(int fd, const Connection& c, std::uint32_t events) {
  epoll_event e{c.peer_done ? events : events | EPOLLIN | EPOLLRDHUP, {.fd = fd}};
  epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &e);
}

void ConnectionTable::send_more(int fd, Connection& c) {
  const std::size_t body_size = c.body ? c.body->size() : 0;
  while (c.sent < c.head.size() + body_size) {
    iovec parts[2];
    int n_parts = 0;
    if (c.sent < c.head.size()) {
      parts[n_parts++] = {c.head.data() + c.sent, c.head.size() - c.sent};
    }
    const std::size_t body_sent = c.sent > c.head.size() ? c.sent - c.head.size() : 0;
    if (body_size > body_sent) {
      parts[n_parts++] = {const_cast<char*>(c.body->data()) + body_sent, body_size - body_sent};
    }
    msghdr msg{};
    msg.msg_iov = parts;
    msg.msg_iovlen = static_cast<std::size_t>(n_parts);
    const ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EAGAIN) {
      c.blocked = true;
      watch(fd, c, EPOLLOUT);
      return;
    }
    if (n <= 0) {
      drop(fd);
      return;
    }
    c.sent += static_cast<std::size_t>(n);
    c.progress = Clock::now();
    c.blocked = false;
  }
  if (c.peer_done) {
    drop(fd);  // both sides are done, and no input is left unread: the close loses nothing
    return;
  }
  shutdown(fd, SHUT_WR);
  c.state = Connection::State::closing;
  watch(fd, c, 0);
}

void ConnectionTable::respond(int fd, Connection& c, const Response& r, bool head_only,
                              std::optional<std::size_t> head_length) {
  const std::optional<std::size_t> length = r.body ? r.body->size() : head_length;
  c.head = "HTTP/1.1 " + std::to_string(r.status) + " " + r.reason + "\r\nContent-Type: " + r.type +
           (length ? "\r\nContent-Length: " + std::to_string(*length) : "") +
           (r.gzipped ? "\r\nContent-Encoding: gzip" : "") +
           (r.metrics ? "\r\nVary: Accept-Encoding" : "") +
           (r.allow_header ? "\r\nAllow: GET, HEAD" : "") + "\r\nConnection: close\r\n\r\n";
  c.body = head_only ? nullptr : r.body;
  c.state = Connection::State::answering;
  c.answered = c.progress = Clock::now();
  send_more(fd, c);
}

std::shared_ptr<const std::string> ConnectionTable::gzipped_page(const HeldPage& page) {
  if (page.gzipped || !page.plain) {
    return page.gzipped;
  }
  // Level 1: a metrics page shrinks about as much as at 6, in a fraction of the time
  // (tests/bench: BM_GzipMetricsPage).
  auto gz = std::make_shared<const std::string>(gzip(*page.plain, 1));
  hold_gzipped_(page.number, gz);
  return gz;
}

std::shared_ptr<const std::string> ConnectionTable::plain_page(const HeldPage& page) {
  if (page.plain || !page.gzipped) {
    return page.plain;
  }
  if (inflated_number_ == page.number) {
    if (auto shared = inflated_.lock()) {
      return shared;
    }
  }
  auto plain = std::make_shared<const std::string>(gunzip(*page.gzipped));
  inflated_ = plain;
  inflated_number_ = page.number;
  return plain;
}

void ConnectionTable::set_page_body(Response& r, bool gzip_it) {
  const HeldPage page = page_();
  // zlib or the inflated page may not get their memory: the scrape then gets the plain page if
  // one is held, or a 503, rather than the server thread ending the daemon.
  try {
    r.body = gzip_it ? gzipped_page(page) : plain_page(page);
    r.gzipped = gzip_it && r.body != nullptr;
  } catch (const std::exception&) {
    if (page.plain) {
      r.body = page.plain;
      r.gzipped = false;
    } else {
      r = {503, "Service Unavailable", "text/plain; charset=utf-8",
           text("cannot make the page now\n")};
    }
  }
}

void ConnectionTable::on_readable(int fd, Connection& c) {
  char buf[4096];
  // At most kReadPerEvent a call: a flooding client waits for the next turn like everyone else.
  for (std::size_t read = 0; read < kReadPerEvent;) {
    const ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      return;
    }
    const bool whole_request =
        c.state == Connection::State::waiting || c.state == Connection::State::answering;
    if (n == 0 && whole_request && !c.peer_done) {
      // End of input after a whole request is a half-close (nc -N, socat, scripts): the
      // request is still answered, in full.
      c.peer_done = true;
      watch(fd, c, c.state == Connection::State::answering ? std::uint32_t{EPOLLOUT} : 0);
      return;
    }
    if (n <= 0) {
      drop(fd);  // closed (or reset) before a whole request, or done after the response
      return;
    }
    read += static_cast<std::size_t>(n);
    if (c.state != Connection::State::reading) {
      // Input after the request (a body, a flood) is read and discarded, up to a bound.
      c.discarded += static_cast<std::size_t>(n);
      if (c.discarded > kMaxDiscardedBytes) {
        drop(fd);
        return;
      }
      continue;
    }
    c.in.append(buf, static_cast<std::size_t>(n));
    const auto end = c.in.find("\r\n\r\n");
    if (end != std::string::npos && end + 4 <= kMaxHttpRequestBytes) {
      c.discarded = c.in.size() - (end + 4);
      c.in.resize(end + 4);
      bool head_only = false;
      if (answer(std::string_view(c.in).substr(0, end), head_only).metrics && page_().stale) {
        c.state = Connection::State::waiting;
        c.waiting_since = Clock::now();
        if (!asked_) {
          asked_ = true;
          want_page_();
        }
        continue;  // read on: the peer may half-close
      }
      answer_request(fd, c, end);
      return;
    }
    if (c.in.size() > kMaxHttpRequestBytes) {
      respond(fd, c,
              {431, "Request Header Fields Too Large", "text/plain; charset=utf-8",
               text("request too large\n")},
              false);
      return;
    }
  }
}

void ConnectionTable::answer_request(int fd, Connection& c, std::size_t head_end) {
  bool head_only = false;
  const std::string_view head = std::string_view(c.in).substr(0, head_end);
  auto r = answer(head, head_only);
  std::optional<std::size_t> head_length;
  if (r.metrics && head_only) {
    // HEAD names the form GET would send, with its length when known: a form is never made
    // (compressed or inflated) only to be measured.
    const HeldPage page = page_();
    r.gzipped = accepts_gzip(head) && (page.gzipped || page.plain);
    if (r.gzipped && page.gzipped) {
      head_length = page.gzipped->size();
    } else if (!r.gzipped) {
      head_length = page.plain_bytes;
    }
  } else if (r.metrics) {
    set_page_body(r, accepts_gzip(head));
  }
  c.in.clear();
  respond(fd, c, r, head_only, head_length);
}

void ConnectionTable::on_published() {
  asked_ = false;
  std::vector<int> waiting;
  for (const auto& [fd, c] : connections_) {
    if (c.state == Connection::State::waiting) {
      waiting.push_back(fd);
    }
  }
  for (const int fd : waiting) {
    auto& c = connections_.at(fd);
    answer_request(fd, c, c.in.size() - 4);
  }
}

void ConnectionTable::admit(int fd) {
  const std::string address = peer_address(fd);
  // Make room by pushing out the oldest unfinished request, of this address first.
  const bool address_full = per_address_[address] >= kMaxHttpPerAddress;
  if (address_full || connections_.size() >= kMaxHttpConnections) {
    const int pushed_out = victim(address_full ? address : "");
    if (pushed_out < 0) {
      close(fd);  // every slot is busy answering: the client retries
      if (per_address_[address] == 0) {
        per_address_.erase(address);
      }
      return;
    }
    drop(pushed_out);
  }
  epoll_event e{EPOLLIN | EPOLLRDHUP, {.fd = fd}};
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &e) != 0) {
    close(fd);
    return;
  }
  ++per_address_[address];
  Connection& c = connections_[fd];
  c.address = address;
  c.started = Clock::now();
}

void ConnectionTable::expire() {
  const auto now = Clock::now();
  std::vector<int> late;
  std::vector<int> waited;
  for (const auto& [fd, c] : connections_) {
    const bool request_late =
        c.state == Connection::State::reading && now - c.started > kRequestDeadline;
    const bool response_late =
        (c.state == Connection::State::answering || c.state == Connection::State::closing) &&
        now - c.answered > kResponseDeadline;
    if (request_late || response_late) {
      late.push_back(fd);
    } else if (c.state == Connection::State::waiting && now - c.waiting_since >= kPageWait) {
      waited.push_back(fd);
    }
  }
  for (const int fd : late) {
    drop(fd);
  }
  for (const int fd : waited) {
    auto& c = connections_.at(fd);
    answer_request(fd, c, c.in.size() - 4);  // the owner is busy: the last page
    asked_ = false;                          // and the next scrape asks again
  }
}

}  // namespace

Result<int> listen_on(const std::string& address) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos || colon + 1 >= address.size()) {
    return Error{"", 0, 0, "expected HOST:PORT, got '" + address + "'"};
  }
  std::string host = address.substr(0, colon);
  const std::string port_text = address.substr(colon + 1);
  if (port_text.find_first_not_of("0123456789") != std::string::npos || port_text.size() > 5 ||
      std::stoul(port_text) > 65535) {
    return Error{"", 0, 0, "bad port '" + port_text + "' in '" + address + "'"};
  }
  const auto port = static_cast<std::uint16_t>(std::stoul(port_text));
  sockaddr_storage addr{};
  socklen_t len = 0;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
    auto* a = reinterpret_cast<sockaddr_in6*>(&addr);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    if (inet_pton(AF_INET6, host.c_str(), &a->sin6_addr) != 1) {
      return Error{"", 0, 0, "bad IPv6 address '" + host + "' in '" + address + "'"};
    }
    len = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&addr);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    if (inet_pton(AF_INET, host.c_str(), &a->sin_addr) != 1) {
      return Error{"", 0, 0,
                   "bad IPv4 address '" + host + "' in '" + address +
                       "' (IPv6 addresses go in brackets: [::1]:9847)"};
    }
    len = sizeof *a;
  }
  const int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return Error{address, 0, errno, "cannot create a socket"};
  }
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  // A deep backlog: a burst of scrapes waits in the kernel instead of in SYN retransmissions.
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 || listen(fd, SOMAXCONN) != 0) {
    const int err = errno;
    close(fd);
    return Error{address, 0, err, "cannot listen"};
  }
  return fd;
}

Result<std::unique_ptr<MetricsServer>> MetricsServer::start(
    int listen_fd, std::shared_ptr<const std::string> first_page, std::function<void()> want_page) {
  std::unique_ptr<MetricsServer> server(new MetricsServer());
  server->description_ = describe_socket(listen_fd, &server->port_);
  server->want_page_ = std::move(want_page);
  server->listen_fd_ = listen_fd;
  server->epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  server->wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  server->published_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  server->publish(std::move(first_page));
  const int flags = fcntl(listen_fd, F_GETFL);
  epoll_event listen_event{EPOLLIN, {.fd = listen_fd}};
  epoll_event wake_event{EPOLLIN, {.fd = server->wake_fd_}};
  epoll_event published_event{EPOLLIN, {.fd = server->published_fd_}};
  if (server->epoll_fd_ < 0 || server->wake_fd_ < 0 || server->published_fd_ < 0 || flags < 0 ||
      fcntl(listen_fd, F_SETFL, flags | O_NONBLOCK) != 0 ||
      epoll_ctl(server->epoll_fd_, EPOLL_CTL_ADD, listen_fd, &listen_event) != 0 ||
      epoll_ctl(server->epoll_fd_, EPOLL_CTL_ADD, server->wake_fd_, &wake_event) != 0 ||
      epoll_ctl(server->epoll_fd_, EPOLL_CTL_ADD, server->published_fd_, &published_event) != 0) {
    return Error{server->description_, 0, errno, "cannot start the HTTP server"};
  }
  server->thread_ = std::thread([s = server.get()] { s->run(); });
  return server;
}

MetricsServer::~MetricsServer() {
  if (thread_.joinable()) {
    const std::uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof one);
    thread_.join();
  }
  for (const int fd : {listen_fd_, epoll_fd_, wake_fd_, published_fd_}) {
    if (fd >= 0) {
      close(fd);
    }
  }
}

void MetricsServer::publish(std::shared_ptr<const std::string> page) {
  {
    std::lock_guard lock(mutex_);
    const std::size_t bytes = page ? page->size() : 0;
    page_ = {std::move(page), nullptr, page_.number + 1, bytes, false};
  }
  const std::uint64_t one = 1;
  (void)!write(published_fd_, &one, sizeof one);
}

void MetricsServer::invalidate() {
  std::lock_guard lock(mutex_);
  page_.stale = true;
}

HeldPage MetricsServer::page() const {
  std::lock_guard lock(mutex_);
  return page_;
}

void MetricsServer::hold_gzipped(std::uint64_t number, std::shared_ptr<const std::string> gzipped) {
  std::shared_ptr<const std::string> plain;  // freed after the lock is let go
  std::lock_guard lock(mutex_);
  if (page_.number == number) {
    plain = std::move(page_.plain);
    page_.gzipped = std::move(gzipped);
  }
}

void MetricsServer::run() {
  pthread_setname_np(pthread_self(), "metrics-http");
  ConnectionTable connections(
      epoll_fd_, [this] { return page(); },
      [this](std::uint64_t number, std::shared_ptr<const std::string> gzipped) {
        hold_gzipped(number, std::move(gzipped));
      },
      want_page_);
  std::vector<epoll_event> events(64);
  auto last_expiry = Clock::now();
  for (;;) {
    // Deadlines matter only while connections are open: an idle server sleeps until one comes.
    const int n = epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()),
                             connections.empty() ? -1 : kTickMs);
    for (int i = 0; i < n; ++i) {
      const int fd = events[static_cast<std::size_t>(i)].data.fd;
      if (fd == wake_fd_) {
        return;  // the table closes every connection
      }
      if (fd == published_fd_) {
        std::uint64_t count = 0;
        (void)!read(published_fd_, &count, sizeof count);
        connections.on_published();
        continue;
      }
      if (fd == listen_fd_) {
        for (int accepted = 0; accepted < 256; ++accepted) {
          const int c = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) {
            break;  // EAGAIN: all taken; anything else: try again on the next wake-up
          }
          connections.admit(c);
        }
        continue;
      }
      connections.on_event(fd, events[static_cast<std::size_t>(i)].events);
    }
    if (Clock::now() - last_expiry >= std::chrono::milliseconds(kTickMs)) {
      connections.expire();
      last_expiry = Clock::now();
    }
  }
}

}  // namespace memtide::daemon
