// The /metrics endpoint of a running memtided over real TCP: content, errors, and clients that
// misbehave (garbage, oversized headers, one byte per second, hundreds at once). Through all of
// it the daemon must keep ticking and keep answering well-behaved scrapes.
#include <chrono>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../support/running_daemon.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

int connect_to(std::uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Reads until the peer closes or `timeout` passes.
std::string read_all(int fd, std::chrono::milliseconds timeout = 5s) {
  std::string out;
  const auto deadline = Clock::now() + timeout;
  char buf[65536];
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) {
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

// One request on a fresh connection; returns the raw response ("" when refused).
std::string http_exchange(std::uint16_t port, const std::string& request) {
  const int fd = connect_to(port);
  if (fd < 0) {
    return "";
  }
  send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string response = read_all(fd);
  close(fd);
  return response;
}

std::string get(std::uint16_t port, const std::string& path) {
  return http_exchange(port, "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
}

int status_of(const std::string& response) {
  if (response.size() < 12 || response.rfind("HTTP/1.", 0) != 0) {
    return 0;
  }
  return std::stoi(response.substr(9, 3));
}

using memtide::testing::RunningDaemon;

// A normal scrape still works and the loop still ticks.
void expect_healthy(RunningDaemon& d, std::uint16_t port) {
  const auto r = get(port, "/metrics");
  EXPECT_EQ(status_of(r), 200);
  EXPECT_NE(r.find("memtide_build_info{version="), std::string::npos);
  d.expect_ticking();
}

TEST_F(RunningDaemon, ServesMetricsIndexAndErrors) {
  std::this_thread::sleep_for(500ms);  // a few ticks
  const auto r = get(port_, "/metrics");
  ASSERT_EQ(status_of(r), 200) << r.substr(0, 200);
  EXPECT_NE(r.find("Content-Type: text/plain; version=0.0.4"), std::string::npos);
  EXPECT_NE(r.find("memtide_vm_balloon_bytes{domain=\"test\",uuid=\""), std::string::npos);
  EXPECT_NE(r.find("memtide_ticks_total "), std::string::npos);
  EXPECT_EQ(status_of(get(port_, "/")), 200);
  EXPECT_EQ(status_of(get(port_, "/secret")), 404);
  EXPECT_EQ(status_of(http_exchange(port_,
                                    "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: "
                                    "5\r\nConnection: close\r\n\r\nhello")),
            405);
  const auto head =
      http_exchange(port_, "HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(status_of(head), 200);
  EXPECT_EQ(head.find("memtide_build_info"), std::string::npos);  // headers only
}

TEST_F(RunningDaemon, GarbageAndOversizedRequestsAreRefused) {
  const auto garbage = http_exchange(
      port_, std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc", 9) + "\r\n\r\n");  // a TLS hello
  EXPECT_TRUE(garbage.empty() || status_of(garbage) == 400) << garbage.substr(0, 80);
  const auto huge = http_exchange(port_, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " +
                                             std::string(200'000, 'a') + "\r\n\r\n");
  EXPECT_TRUE(huge.empty() || status_of(huge) >= 400) << huge.substr(0, 80);
  const auto nul = http_exchange(port_, std::string("GET /met\0rics HTTP/1.1\r\n\r\n", 26));
  EXPECT_NE(status_of(nul), 200);
  expect_healthy(*this, port_);
}

TEST_F(RunningDaemon, ASlowClientHoldsUpNobody) {
  const int slow = connect_to(port_);
  ASSERT_GE(slow, 0);
  const std::string request = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
  for (std::size_t i = 0; i < 4; ++i) {
    send(slow, &request[i], 1, MSG_NOSIGNAL);
    expect_healthy(*this, port_);  // each round takes about a second
  }
  close(slow);
}

TEST_F(RunningDaemon, FiveHundredConcurrentScrapes) {
  std::vector<int> fds;
  for (int i = 0; i < 500; ++i) {
    const int fd = connect_to(port_);
    if (fd >= 0) {
      fds.push_back(fd);
    }
  }
  ASSERT_EQ(fds.size(), 500u);
  const std::string request = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  for (const int fd : fds) {
    send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  }
  int ok = 0;
  for (const int fd : fds) {
    ok += status_of(read_all(fd, 10s)) == 200 ? 1 : 0;
    close(fd);
  }
  EXPECT_EQ(ok, 500);
  expect_healthy(*this, port_);
}

}  // namespace
