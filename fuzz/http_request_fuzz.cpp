// The metrics server's request handling over a real loopback connection: request bytes sent in
// pieces split where the input says (so the server meets a request line, a header or its end cut
// anywhere), then a half-close or a reset, with the page sometimes stale (the scrape then waits
// for a new one). Properties: every reply starts with a status line; a whole request head (or
// one too large) always gets a reply; a reply's Content-Length is its body's length. Memory is
// bounded by libFuzzer's -rss_limit_mb, time by -timeout (a hang is a finding).
//
// Input: byte 0 flags (bit 0 reset instead of half-close, bit 1 the page stale), byte 1 the
// number of pieces (low 3 bits), then one byte per cut (a share of the rest), then the request.
#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz_check.hpp"
#include "http_server.hpp"

namespace {

using memtide::fuzz::require;
using Clock = std::chrono::steady_clock;

// One server for the whole run, with an owner that publishes a page soon after it is asked.
struct Server {
  std::atomic<bool> wanted{false};
  std::unique_ptr<memtide::daemon::MetricsServer> server;
  std::thread owner;
  std::atomic<bool> stop{false};
  Server() {
    auto fd = memtide::daemon::listen_on("127.0.0.1:0");
    require(fd.ok(), "listen on loopback");
    auto started = memtide::daemon::MetricsServer::start(
        *fd, std::make_shared<const std::string>("memtide_up 1\n"), [this] { wanted = true; });
    require(started.ok(), "start the server");
    server = std::move(*started);
    owner = std::thread([this] {
      std::uint64_t n = 0;
      while (!stop) {
        if (wanted.exchange(false)) {
          server->publish(
              std::make_shared<const std::string>("memtide_up " + std::to_string(++n) + "\n"));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    });
  }
  ~Server() {
    stop = true;
    owner.join();
  }
};

Server& server() {
  static Server s;
  return s;
}

// A connection to the server; -1 (errno printed) if none could be made in 20 tries over 100 ms.
// A connect on loopback failed once in a full run at this rate (over a thousand connections a
// second), most likely a SYN from a reused client port meeting the TIME_WAIT socket of an earlier
// connection on the same ports; the input alone passed. A server that stopped listening fails
// every try.
int connect_to(std::uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int error = 0;
  for (int attempt = 0; attempt < 20; ++attempt) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      const int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      return fd;
    }
    error = errno;
    close(fd);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::fprintf(stderr, "connect to 127.0.0.1:%u: %s\n", port, std::strerror(error));
  return -1;
}

// Reads until the server closes, or 3 s pass (a waiting scrape is answered within 1 s).
std::string read_reply(int fd) {
  std::string out;
  const auto deadline = Clock::now() + std::chrono::seconds(3);
  char buf[65536];
  while (Clock::now() < deadline && out.size() < (std::size_t{1} << 20)) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) {
      continue;
    }
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      break;
    }
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) {
    return 0;
  }
  const bool reset = (data[0] & 1) != 0;
  if ((data[0] & 2) != 0) {
    server().server->invalidate();
  }
  const std::size_t pieces = 1 + (data[1] & 7);
  const std::size_t header = std::min(size, 2 + (pieces - 1));
  const std::string request(reinterpret_cast<const char*>(data) + header, size - header);
  std::vector<std::size_t> cuts;
  for (std::size_t i = 2; i < header; ++i) {
    cuts.push_back(request.size() * data[i] / 256);
  }
  std::sort(cuts.begin(), cuts.end());
  cuts.push_back(request.size());

  const int fd = connect_to(server().server->port());
  require(fd >= 0, "connect to the server");
  std::size_t sent = 0;
  for (const std::size_t cut : cuts) {
    if (cut > sent) {
      send(fd, request.data() + sent, cut - sent, MSG_NOSIGNAL);
      sent = cut;
      std::this_thread::sleep_for(std::chrono::microseconds(200));  // a segment of its own
    }
  }
  if (reset) {
    const linger abort_close{1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort_close, sizeof abort_close);
    close(fd);
    return 0;
  }
  shutdown(fd, SHUT_WR);
  const std::string reply = read_reply(fd);
  close(fd);

  const auto head_end = request.find("\r\n\r\n");
  const bool whole_head =
      head_end != std::string::npos && head_end + 4 <= memtide::daemon::kMaxHttpRequestBytes;
  const bool too_large =
      head_end == std::string::npos && request.size() > memtide::daemon::kMaxHttpRequestBytes;
  if (whole_head || too_large) {
    require(!reply.empty(), "a whole (or too large) request gets a reply");
  }
  if (reply.empty()) {
    return 0;
  }
  require(reply.size() >= 13 && reply.compare(0, 9, "HTTP/1.1 ") == 0 &&
              std::isdigit(static_cast<unsigned char>(reply[9])) != 0 &&
              std::isdigit(static_cast<unsigned char>(reply[10])) != 0 &&
              std::isdigit(static_cast<unsigned char>(reply[11])) != 0 && reply[12] == ' ',
          "a reply starts with a status line");
  const auto reply_head_end = reply.find("\r\n\r\n");
  require(reply_head_end != std::string::npos, "a reply's head ends");
  const auto length_at = reply.find("\r\nContent-Length: ");
  const bool head_request = request.compare(0, 5, "HEAD ") == 0;
  if (length_at != std::string::npos && length_at < reply_head_end && !head_request) {
    const std::size_t length = std::stoul(reply.substr(length_at + 18));
    require(reply.size() - reply_head_end - 4 == length, "a body as long as Content-Length");
  }
  return 0;
}
