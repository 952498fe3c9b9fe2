// gzip for the metrics page: what zlib's inflate reads back, and which Accept-Encoding headers
// ask for it.
#include "gzip.hpp"

#include <random>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

#include "../support/gunzip.hpp"

namespace memtide::daemon {
namespace {

// Inflates with zlib and fails the test when `gz` is not one whole gzip member.
std::string inflated(const std::string& gz) {
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
    EXPECT_EQ(inflated(gz), page);
  }
  EXPECT_EQ(inflated(gzip("", 1)), "");
  // Incompressible input grows a little, and still comes back whole.
  std::mt19937 random(7);
  std::string noise(100000, '\0');
  for (auto& c : noise) {
    c = static_cast<char>(random());
  }
  EXPECT_EQ(inflated(gzip(noise, 1)), noise);
}

// The metrics server holds a page gzipped and inflates it for a scraper that wants it plain.
TEST(Gzip, GunzipReadsBackWhatZlibWrote) {
  std::string page;
  for (int i = 0; i < 50000; ++i) {
    page += "memtide_vm_host_resident_bytes{domain=\"vm-" + std::to_string(i) + "\"} " +
            std::to_string(i * 8192) + "\n";
  }
  const std::string gz = gzip(page, 1);
  ASSERT_EQ(testing::gunzip(gz), page);  // zlib's own reading of it, as a check of the input
  EXPECT_EQ(gunzip(gz), page);
  EXPECT_EQ(gunzip(gzip("", 1)), "");
  // Made in one block of the page's size, from the member's trailer.
  EXPECT_EQ(gunzip(gz).capacity(), page.size());
  // A highly compressible page (deflate's best ratio is about 1,000 to 1) comes back whole.
  const std::string blank(std::size_t{8} << 20, ' ');
  EXPECT_EQ(gunzip(gzip(blank, 9)), blank);
}

TEST(Gzip, GunzipRefusesWhatIsNotOneWholeMember) {
  const std::string gz = gzip(std::string(100000, 'x') + "end", 6);
  EXPECT_THROW(gunzip(gz.substr(0, gz.size() - 1)), std::invalid_argument);  // cut short
  EXPECT_THROW(gunzip(gz.substr(0, gz.size() / 2)), std::invalid_argument);
  EXPECT_THROW(gunzip(gz + "x"), std::invalid_argument);  // bytes after the member
  EXPECT_THROW(gunzip(""), std::invalid_argument);
  EXPECT_THROW(gunzip("not gzip at all"), std::invalid_argument);
  std::string wrong_size = gz;  // the trailer's length says 4 GiB - 1
  for (std::size_t i = wrong_size.size() - 4; i < wrong_size.size(); ++i) {
    wrong_size[i] = '\xff';
  }
  EXPECT_THROW(gunzip(wrong_size), std::invalid_argument);
  std::string corrupt = gz;  // a bit flipped in the data: the CRC no longer matches
  corrupt[corrupt.size() / 2] = static_cast<char>(corrupt[corrupt.size() / 2] ^ 0x10);
  EXPECT_THROW(gunzip(corrupt), std::invalid_argument);
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
