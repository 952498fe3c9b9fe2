// gzip for the metrics page: what zlib's inflate reads back, and which Accept-Encoding headers
// ask for it.
#include "gzip.hpp"

#include <random>
#include <string>

#include <gtest/gtest.h>

#include "../support/gunzip.hpp"

namespace memtide::daemon {
namespace {

// Inflates with zlib and fails the test when `gz` is not one whole gzip member.
std::string gunzip(const std::string& gz) {
  bool ok = false;
  auto out = testing::gunzip(gz, &ok);
  EXPECT_TRUE(ok);
  return out;
}

TEST(Gzip, InflatesBackToTheInput) {
  std::string page;
  for (int i = 0; i < 20000; ++i) {
    page += "memtide_vm_balloon_bytes{domain=\"vm-" + std::to_string(i) + "\"} " +
            std::to_string(i * 4096) + "\n";
  }
  for (const int level : {1, 6, 9}) {
    const auto gz = gzip(page, level);
    ASSERT_GE(gz.size(), 18u);
    EXPECT_EQ(static_cast<unsigned char>(gz[0]), 0x1f);  // gzip magic
    EXPECT_EQ(static_cast<unsigned char>(gz[1]), 0x8b);
    EXPECT_LT(gz.size() * 5, page.size()) << "level " << level;
    // Held for as long as the page is served: no bigger than what it holds (not the
    // input-sized bound it was compressed into).
    EXPECT_LT(gz.capacity() * 4, page.size()) << "level " << level;
    EXPECT_EQ(gunzip(gz), page);
  }
  EXPECT_EQ(gunzip(gzip("", 1)), "");
  // Incompressible input grows a little, and still comes back whole.
  std::mt19937 random(7);
  std::string noise(100000, '\0');
  for (auto& c : noise) {
    c = static_cast<char>(random());
  }
  EXPECT_EQ(gunzip(gzip(noise, 1)), noise);
}

bool accepts(const std::string& headers) {
  return accepts_gzip("GET /metrics HTTP/1.1\r\nHost: h\r\n" + headers);
}

TEST(Gzip, OnlyWhenTheClientAcceptsIt) {
  EXPECT_TRUE(accepts("Accept-Encoding: gzip"));  // Prometheus
  EXPECT_TRUE(accepts("accept-encoding:gzip, deflate, br\r\nX: y"));
  EXPECT_TRUE(accepts("Accept-Encoding: br;q=1.0, GZIP;q=0.5"));
  EXPECT_TRUE(accepts("Accept-Encoding: *"));
  EXPECT_TRUE(accepts("Accept-Encoding: identity\r\nAccept-Encoding: gzip"));
  EXPECT_FALSE(accepts(""));
  EXPECT_FALSE(accepts("Accept-Encoding: identity"));
  EXPECT_FALSE(accepts("Accept-Encoding: gzip;q=0"));
  EXPECT_FALSE(accepts("Accept-Encoding: gzip; q=0.000"));
  EXPECT_FALSE(accepts("Accept-Encoding: *, gzip;q=0"));  // the explicit refusal wins
  EXPECT_FALSE(accepts("Accept-Encoding: *;q=0"));
  EXPECT_FALSE(accepts("Accept-Encoding: xgzip"));
  EXPECT_FALSE(accepts("X-Accept-Encoding: gzip"));
  EXPECT_FALSE(accepts_gzip("GET /metrics?Accept-Encoding:gzip HTTP/1.1"));  // not a header
}

}  // namespace
}  // namespace memtide::daemon
