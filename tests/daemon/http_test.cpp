// The /metrics endpoint of a running memtided over real TCP: content, errors, and clients that
// misbehave (garbage, oversized headers, one byte per second, hundreds at once). Through all of
// it the daemon must keep ticking and keep answering well-behaved scrapes.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <fstream>
#include <memory>
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../support/gunzip.hpp"
#include "../support/running_daemon.hpp"
#include "http_server.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Connects from `source`, any address in 127.0.0.0/8 (all of it is loopback on Linux), so one
// test can play many clients.
int connect_to(std::uint16_t port, const char* source = nullptr) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (source != nullptr) {
    sockaddr_in from{};
    from.sin_family = AF_INET;
    inet_pton(AF_INET, source, &from.sin_addr);
    if (bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof from) != 0) {
      close(fd);
      return -1;
    }
  }
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

using memtide::testing::gunzip;
using memtide::testing::RunningDaemon;

void raise_file_limit() {
  rlimit files{};
  getrlimit(RLIMIT_NOFILE, &files);
  files.rlim_cur = std::max<rlim_t>(files.rlim_cur, std::min<rlim_t>(files.rlim_max, 4096));
  setrlimit(RLIMIT_NOFILE, &files);
}

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

// The page is rendered when a scrape asks for it, not every tick, and it is never older than the
// last tick: ten ticks without a scrape render nothing, the next scrape renders once and shows
// them all.
TEST_F(RunningDaemon, RendersThePageOnlyForScrapes) {
  auto counter = [](const std::string& page, const std::string& name) {
    const auto at = page.find("\n" + name + " ");
    EXPECT_NE(at, std::string::npos) << name;
    return at == std::string::npos ? 0.0 : std::stod(page.substr(at + name.size() + 2));
  };
  std::this_thread::sleep_for(500ms);
  const auto first = get(port_, "/metrics");
  const double renders = counter(first, "memtide_metrics_renders_total");
  const double ticks = counter(first, "memtide_ticks_total");
  std::this_thread::sleep_for(2s);  // 10 ticks at 200 ms
  const auto second = get(port_, "/metrics");
  EXPECT_EQ(counter(second, "memtide_metrics_renders_total"), renders + 1);
  EXPECT_GE(counter(second, "memtide_ticks_total"), ticks + 8);
  // Right after, with no tick in between, the same page serves again without a render.
  const auto third = get(port_, "/metrics");
  EXPECT_LE(counter(third, "memtide_metrics_renders_total"), renders + 2);
}

// A scraper that accepts gzip (Prometheus does) gets the page gzipped; one that does not, or
// refuses it, gets it plain. Both are told the answer varies with Accept-Encoding.
TEST_F(RunningDaemon, GzipsThePageForScrapersThatAskForIt) {
  std::this_thread::sleep_for(300ms);
  const auto r = http_exchange(
      port_,
      "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n");
  ASSERT_EQ(status_of(r), 200) << r.substr(0, 200);
  const auto head_end = r.find("\r\n\r\n");
  ASSERT_NE(head_end, std::string::npos);
  const std::string head = r.substr(0, head_end);
  const std::string body = r.substr(head_end + 4);
  EXPECT_NE(head.find("\r\nContent-Encoding: gzip"), std::string::npos) << head;
  EXPECT_NE(head.find("\r\nVary: Accept-Encoding"), std::string::npos) << head;
  EXPECT_NE(head.find("\r\nContent-Length: " + std::to_string(body.size()) + "\r\n"),
            std::string::npos)
      << head;
  const std::string page = gunzip(body);
  EXPECT_NE(page.find("memtide_build_info{version="), std::string::npos);
  EXPECT_NE(page.find("memtide_vm_balloon_bytes{domain=\"test\",uuid=\""), std::string::npos);
  const auto plain = get(port_, "/metrics");
  EXPECT_EQ(plain.find("Content-Encoding"), std::string::npos);
  EXPECT_NE(plain.find("\r\nVary: Accept-Encoding"), std::string::npos);
  // A gzipped page is a fraction of the plain one.
  EXPECT_LT(body.size() * 3, plain.size());
  const auto refused = http_exchange(port_,
                                     "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: "
                                     "gzip;q=0\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(refused.find("Content-Encoding"), std::string::npos);
  EXPECT_NE(refused.find("memtide_build_info{version="), std::string::npos);
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

// 500 scrapers (from 250 addresses: one address may hold 64 connections) at once.
TEST_F(RunningDaemon, FiveHundredConcurrentScrapes) {
  std::vector<int> fds;
  for (int i = 0; i < 500; ++i) {
    const std::string source = "127.0.1." + std::to_string(1 + i % 250);
    const int fd = connect_to(port_, source.c_str());
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

// Slow-header clients (one byte now and then, never a whole request) fill every slot, from one
// address and from hundreds; each scrape still gets through, promptly. They once kept every
// scrape out for as long as they went on: any byte reset the idle timeout and nothing bounded a
// whole request.
TEST_F(RunningDaemon, TricklingClientsCannotKeepAScrapeOut) {
  raise_file_limit();
  std::vector<int> trickling;
  for (int i = 0; i < 600; ++i) {
    // Half from the scraper's own address, half from 150 others.
    const std::string source =
        i % 2 == 0 ? "127.0.0.1" : "127.0.2." + std::to_string(1 + (i / 2) % 150);
    const int fd = connect_to(port_, source.c_str());
    if (fd >= 0) {
      send(fd, "G", 1, MSG_NOSIGNAL);
      trickling.push_back(fd);
    }
  }
  ASSERT_GE(trickling.size(), 550u);
  int served = 0;
  std::chrono::milliseconds slowest{0};
  for (int round = 0; round < 8; ++round) {
    for (const int fd : trickling) {
      send(fd, "E", 1, MSG_NOSIGNAL | MSG_DONTWAIT);  // fails once pushed out; that is fine
    }
    const auto start = Clock::now();
    const auto r = get(port_, "/metrics");
    slowest = std::max(slowest,
                       std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start));
    served += status_of(r) == 200 ? 1 : 0;
    std::this_thread::sleep_for(1s);
  }
  EXPECT_EQ(served, 8);
  EXPECT_LT(slowest, 2000ms);
  for (const int fd : trickling) {
    close(fd);
  }
  expect_healthy(*this, port_);
}

// Clients that send a whole request and then neither read their answer nor close, 64 from each
// of 9 loopback addresses (more than the table holds), cannot keep a scrape out: finished and
// stalled responses make room. They once did for their whole 30 s response deadline (0 of 20
// scrapes got through, all reset), since only connections still reading could be pushed out.
TEST_F(RunningDaemon, AnsweredButUnreadConnectionsCannotKeepAScrapeOut) {
  raise_file_limit();
  const std::string request = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
  std::vector<int> holders;
  for (int a = 2; a <= 10; ++a) {
    const std::string source = "127.0.0." + std::to_string(a);
    for (int i = 0; i < 64; ++i) {
      const int fd = connect_to(port_, source.c_str());
      if (fd >= 0) {
        send(fd, request.data(), request.size(), MSG_NOSIGNAL);
        holders.push_back(fd);
      }
    }
  }
  ASSERT_GE(holders.size(), 560u);
  std::this_thread::sleep_for(1s);  // every request answered (or waiting for its turn)
  int served = 0;
  const auto start = Clock::now();
  for (int i = 0; i < 20 && Clock::now() - start < 10s; ++i) {
    served += status_of(get(port_, "/metrics")) == 200 ? 1 : 0;
  }
  EXPECT_EQ(served, 20);
  for (const int fd : holders) {
    close(fd);
  }
  expect_healthy(*this, port_);
}

// A client that sends its request and then shuts down its side (nc -N, socat, many scripts) gets
// its whole answer, also while it waits for a page being rendered (the page is stale every
// tick here). Such scrapes once got an empty reply in 12-14 of 20.
TEST_F(RunningDaemon, HalfClosedRequestsAreAnswered) {
  const std::string request = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
  int whole = 0;
  for (int i = 0; i < 20; ++i) {
    const int fd = connect_to(port_);
    ASSERT_GE(fd, 0);
    send(fd, request.data(), request.size(), MSG_NOSIGNAL);
    shutdown(fd, SHUT_WR);
    const auto r = read_all(fd);
    close(fd);
    const auto head_end = r.find("\r\n\r\n");
    const bool complete = status_of(r) == 200 && head_end != std::string::npos &&
                          r.find("\r\nContent-Length: " + std::to_string(r.size() - head_end - 4) +
                                 "\r\n") < head_end;
    whole += complete ? 1 : 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(70 * (i % 4)));  // ticks in between
  }
  EXPECT_EQ(whole, 20);
}

// Input after the request is discarded a bounded amount at a time, and a client that keeps
// sending it is dropped: it once held the server's thread in one loop for as long as it sent.
TEST_F(RunningDaemon, AFloodAfterTheRequestIsDroppedAndHoldsUpNobody) {
  const int flood = connect_to(port_);
  ASSERT_GE(flood, 0);
  const std::string request = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
  send(flood, request.data(), request.size(), MSG_NOSIGNAL);
  const std::string junk(4096, 'x');
  bool dropped = false;
  const auto start = Clock::now();
  while (!dropped && Clock::now() - start < 5s) {
    dropped =
        send(flood, junk.data(), junk.size(), MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno != EAGAIN;
    if (!dropped && errno == EAGAIN) {
      std::this_thread::sleep_for(1ms);
    }
  }
  EXPECT_TRUE(dropped);
  close(flood);
  expect_healthy(*this, port_);
}

// One IPv6 host commonly holds a whole /64: its share of the table is per /64, and an IPv4 peer
// reaching an IPv6 socket counts as its IPv4 address.
TEST(MetricsServerShare, IsPerIpv4AddressAndPerIpv6Slash64) {
  const auto share = [](const char* text) {
    sockaddr_storage addr{};
    if (inet_pton(AF_INET, text, &reinterpret_cast<sockaddr_in*>(&addr)->sin_addr) == 1) {
      addr.ss_family = AF_INET;
    } else {
      EXPECT_EQ(inet_pton(AF_INET6, text, &reinterpret_cast<sockaddr_in6*>(&addr)->sin6_addr), 1);
      addr.ss_family = AF_INET6;
    }
    return memtide::daemon::address_share(addr);
  };
  EXPECT_EQ(share("127.0.0.2"), "127.0.0.2");
  EXPECT_NE(share("127.0.0.2"), share("127.0.0.3"));
  EXPECT_EQ(share("::ffff:127.0.0.2"), "127.0.0.2");
  EXPECT_EQ(share("2001:db8:1:2::5"), "2001:db8:1:2::/64");
  EXPECT_EQ(share("2001:db8:1:2:ffff:ffff:ffff:1"), share("2001:db8:1:2::5"));
  EXPECT_NE(share("2001:db8:1:3::5"), share("2001:db8:1:2::5"));
  EXPECT_EQ(share("::1"), "::/64");
}

// A metrics page of `lines` lines (about 50 bytes each), which differ with `salt`.
std::shared_ptr<const std::string> metrics_page(int lines, int salt) {
  std::string text;
  for (int i = 0; i < lines; ++i) {
    text += "memtide_vm_balloon_bytes{domain=\"vm-" + std::to_string(i) + "\"} " +
            std::to_string((i + salt) * 4096) + "\n";
  }
  return std::make_shared<const std::string>(text);
}

std::string body_of(const std::string& response) {
  const auto end = response.find("\r\n\r\n");
  return end == std::string::npos ? std::string() : response.substr(end + 4);
}

const std::string gzip_request =
    "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n";

// The server alone, with pages of its own: a page is held as published until a scrape asks for
// it gzipped, then only gzipped (a 1,000-VM page: 107 kB instead of 1.47 MB), and a plain scrape
// after that still gets it byte for byte, with its length in HEAD. A new page is held plain
// again, and gzipped afresh.
TEST(MetricsServerPage, HeldGzippedOnceAScrapeAsksForGzip) {
  const auto make_page = [](int salt) { return metrics_page(20000, salt); };
  // Whether the server still holds `page` (connections that sent it let it go when closed).
  const auto held = [](const std::weak_ptr<const std::string>& page) {
    const auto deadline = Clock::now() + 2s;
    while (!page.expired() && Clock::now() < deadline) {
      std::this_thread::sleep_for(10ms);
    }
    return !page.expired();
  };
  auto first = make_page(0);
  const std::string first_text = *first;
  const std::weak_ptr<const std::string> first_plain = first;
  auto fd = memtide::daemon::listen_on("127.0.0.1:0");
  ASSERT_TRUE(fd) << fd.error().to_string();
  auto server = memtide::daemon::MetricsServer::start(*fd, std::move(first), [] {});
  ASSERT_TRUE(server) << server.error().to_string();
  const auto port = (*server)->port();

  EXPECT_EQ(body_of(get(port, "/metrics")), first_text);
  EXPECT_TRUE(held(first_plain));  // no scrape asked for gzip yet
  // HEAD names the gzipped form but does not make it only to measure it.
  const auto gzip_head = http_exchange(
      port,
      "HEAD /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n");
  EXPECT_NE(gzip_head.find("\r\nContent-Encoding: gzip"), std::string::npos) << gzip_head;
  EXPECT_EQ(gzip_head.find("Content-Length"), std::string::npos) << gzip_head;
  EXPECT_TRUE(held(first_plain));

  const auto gzipped = http_exchange(port, gzip_request);
  ASSERT_NE(gzipped.find("\r\nContent-Encoding: gzip"), std::string::npos);
  EXPECT_EQ(gunzip(body_of(gzipped)), first_text);
  EXPECT_FALSE(held(first_plain));

  const auto plain = get(port, "/metrics");
  EXPECT_EQ(plain.find("Content-Encoding"), std::string::npos);
  EXPECT_EQ(body_of(plain), first_text);
  const std::string length = "\r\nContent-Length: " + std::to_string(first_text.size()) + "\r\n";
  EXPECT_NE(plain.find(length), std::string::npos);
  const auto head =
      http_exchange(port, "HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_NE(head.find(length), std::string::npos) << head;
  EXPECT_EQ(body_of(head), "");
  EXPECT_EQ(gunzip(body_of(http_exchange(port, gzip_request))), first_text);

  auto second = make_page(1);
  const std::string second_text = *second;
  const std::weak_ptr<const std::string> second_plain = second;
  (*server)->publish(std::move(second));
  EXPECT_EQ(body_of(get(port, "/metrics")), second_text);
  EXPECT_TRUE(held(second_plain));
  EXPECT_EQ(gunzip(body_of(http_exchange(port, gzip_request))), second_text);
  EXPECT_FALSE(held(second_plain));
  EXPECT_EQ(body_of(get(port, "/metrics")), second_text);
}

// A half-closing client that takes a large answer slowly gets all of it: its end of input must
// not cut the response short.
TEST(MetricsServerPage, AHalfClosedRequestGetsALargeAnswerWhole) {
  auto page = metrics_page(160000, 0);  // 8 MB, far more than a socket buffer
  const std::string text = *page;
  auto fd = memtide::daemon::listen_on("127.0.0.1:0");
  ASSERT_TRUE(fd) << fd.error().to_string();
  auto server = memtide::daemon::MetricsServer::start(*fd, std::move(page), [] {});
  ASSERT_TRUE(server) << server.error().to_string();
  const int c = connect_to((*server)->port());
  ASSERT_GE(c, 0);
  const std::string request = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
  send(c, request.data(), request.size(), MSG_NOSIGNAL);
  shutdown(c, SHUT_WR);
  std::this_thread::sleep_for(300ms);  // the server meets the end of input mid-answer
  const auto r = read_all(c, 20s);
  close(c);
  EXPECT_EQ(body_of(r).size(), text.size());
  EXPECT_TRUE(body_of(r) == text);
}

// Plain scrapes of a page held gzipped share one inflated page while it is being sent: 40
// scrapers that take their answers slowly hold one copy between them, not one each (at 1,000
// VMs a copy is 1.47 MB; the 500 scrapes above would hold 735 MB).
TEST(MetricsServerPage, SlowPlainScrapesShareOneInflatedPage) {
  auto page = metrics_page(160000, 0);  // 8 MB
  const std::size_t page_bytes = page->size();
  auto fd = memtide::daemon::listen_on("127.0.0.1:0");
  ASSERT_TRUE(fd) << fd.error().to_string();
  auto server = memtide::daemon::MetricsServer::start(*fd, std::move(page), [] {});
  ASSERT_TRUE(server) << server.error().to_string();
  const auto port = (*server)->port();
  ASSERT_NE(http_exchange(port, gzip_request).find("Content-Encoding: gzip"), std::string::npos);
  const auto resident = [] {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("VmRSS:", 0) == 0) {
        return std::stoull(line.substr(6)) * 1024;
      }
    }
    return 0ull;
  };
  const auto before = resident();
  std::vector<int> slow;
  const std::string request = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  for (int i = 0; i < 40; ++i) {
    const int c = connect_to(port);
    ASSERT_GE(c, 0);
    slow.push_back(c);
    send(c, request.data(), request.size(), MSG_NOSIGNAL);
  }
  // Each has its answer started (its status line arrived), and takes no more.
  int answered = 0;
  for (const int c : slow) {
    pollfd p{c, POLLIN, 0};
    char line[16];
    answered += poll(&p, 1, 5000) == 1 && recv(c, line, sizeof line, 0) == sizeof line &&
                std::string(line, 12) == "HTTP/1.1 200";
  }
  const auto during = resident();
  for (const int c : slow) {
    close(c);
  }
  EXPECT_EQ(answered, 40);
  // One copy, and under a sanitiser its shadow (ThreadSanitizer's came to 5 pages here), against
  // 40 copies without the sharing (338 MB here in the release build).
  EXPECT_LT(during, before + 10 * page_bytes) << "before " << before << ", during " << during;
}

}  // namespace
