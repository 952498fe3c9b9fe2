#include "gzip.hpp"

#include <algorithm>
#include <cctype>
#include <limits>
#include <new>
#include <stdexcept>

#include <zlib.h>

namespace memtide::daemon {

std::string gzip(std::string_view data, int level) {
  z_stream z{};
  // windowBits 15 + 16: a gzip header and trailer around the deflate stream.
  constexpr int kGzipWindowBits = 15 + 16;
  constexpr int kMemLevel = 8;  // zlib's default
  if (deflateInit2(&z, level, Z_DEFLATED, kGzipWindowBits, kMemLevel, Z_DEFAULT_STRATEGY) != Z_OK) {
    throw std::bad_alloc();
  }
  std::string out(deflateBound(&z, static_cast<uLong>(data.size())), '\0');
  int rc = Z_OK;
  // avail_in is 32 bits wide: feed the input in pieces of at most 1 GiB.
  constexpr std::size_t kPiece = std::size_t{1} << 30;
  std::size_t fed = 0;
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out =
      static_cast<uInt>(std::min<std::size_t>(out.size(), std::numeric_limits<uInt>::max()));
  do {
    const std::size_t piece = std::min(kPiece, data.size() - fed);
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data() + fed));
    z.avail_in = static_cast<uInt>(piece);
    fed += piece;
    rc = deflate(&z, fed == data.size() ? Z_FINISH : Z_NO_FLUSH);
  } while (rc == Z_OK && fed < data.size());
  const auto written = z.total_out;
  deflateEnd(&z);
  if (rc != Z_STREAM_END) {
    throw std::logic_error("gzip: deflate returned " + std::to_string(rc));
  }
  // The bound is about the input's size (1.5 MB for a 1,000-VM page), all of it written to
  // when made; the page compresses about tenfold, so it is kept in a buffer of its own size.
  out.resize(written);
  out.shrink_to_fit();
  return out;
}

std::string gunzip(std::string_view gz) {
  // A member ends with its data's size modulo 2^32 (RFC 1952, ISIZE): the buffer is made that
  // size at once (a 1,000-VM page is one 1.5 MB block, mapped and given back whole), within
  // what deflate can expand to (1,032 to 1) so that a wrong trailer cannot ask for more.
  constexpr std::size_t kTrailerBytes = 8;
  constexpr std::size_t kMaxRatio = 1032;
  std::string out;
  if (gz.size() >= kTrailerBytes) {
    std::size_t size = 0;
    for (std::size_t i = 0; i < 4; ++i) {
      size |= std::size_t{static_cast<unsigned char>(gz[gz.size() - 4 + i])} << (8 * i);
    }
    out.reserve(std::min(size, gz.size() * kMaxRatio));
  }
  z_stream z{};
  constexpr int kGzipWindowBits = 15 + 16;  // gzip framing only (not zlib's)
  if (inflateInit2(&z, kGzipWindowBits) != Z_OK) {
    throw std::bad_alloc();
  }
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(gz.data()));
  z.avail_in =
      static_cast<uInt>(std::min<std::size_t>(gz.size(), std::numeric_limits<uInt>::max()));
  int rc = Z_OK;
  try {
    while (rc == Z_OK) {
      if (out.size() == out.capacity()) {
        out.reserve(out.capacity() < 4096 ? 4096 : out.capacity() * 2);
      }
      const std::size_t had = out.size();
      const std::size_t room =
          std::min<std::size_t>(out.capacity() - had, std::numeric_limits<uInt>::max());
      out.resize(had + room);
      z.next_out = reinterpret_cast<Bytef*>(out.data() + had);
      z.avail_out = static_cast<uInt>(room);
      rc = inflate(&z, Z_NO_FLUSH);
      out.resize(had + room - z.avail_out);
      // Z_OK: more to come (the buffer grows if full); Z_BUF_ERROR: the input ended inside the
      // member; Z_STREAM_END: the member's end.
    }
  } catch (...) {
    inflateEnd(&z);
    throw;
  }
  const bool whole = rc == Z_STREAM_END && z.avail_in == 0 && z.total_in == gz.size();
  inflateEnd(&z);
  if (rc == Z_MEM_ERROR) {
    throw std::bad_alloc();
  }
  if (!whole) {
    throw std::invalid_argument("gunzip: not one whole gzip member (zlib " + std::to_string(rc) +
                                ")");
  }
  return out;
}

namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

// Whether a q-parameter ("q=0", "Q=0.000") refuses the coding it follows.
bool refused(std::string_view params) {
  const auto param = trim(params);
  if (param.size() < 2 || (param[0] != 'q' && param[0] != 'Q') || param[1] != '=') {
    return false;
  }
  const auto q = trim(param.substr(2));
  return !q.empty() && q[0] == '0' &&
         std::all_of(q.begin() + 1, q.end(), [](char c) { return c == '.' || c == '0'; });
}

// What one Accept-Encoding value ("gzip, deflate;q=0.5", "*;q=0") says of gzip: an explicit
// gzip item decides; otherwise "*" does; otherwise gzip is not accepted.
bool value_accepts_gzip(std::string_view value) {
  int gzip_ok = -1;  // -1 unsaid, 0 refused, 1 accepted
  int star_ok = -1;
  while (!value.empty()) {
    const auto comma = value.find(',');
    const std::string_view item = value.substr(0, comma);
    value = comma == std::string_view::npos ? std::string_view() : value.substr(comma + 1);
    const auto semi = item.find(';');
    const auto coding = trim(item.substr(0, semi));
    const int ok = semi != std::string_view::npos && refused(item.substr(semi + 1)) ? 0 : 1;
    if (iequals(coding, "gzip")) {
      gzip_ok = ok;
    } else if (coding == "*") {
      star_ok = ok;
    }
  }
  return gzip_ok >= 0 ? gzip_ok == 1 : star_ok == 1;
}

}  // namespace

bool accepts_gzip(std::string_view head) {
  std::size_t pos = head.find("\r\n");  // skip the request line
  while (pos != std::string_view::npos) {
    pos += 2;
    const auto end = head.find("\r\n", pos);
    const auto line = head.substr(pos, end == std::string_view::npos ? head.npos : end - pos);
    pos = end;
    const auto colon = line.find(':');
    if (colon != std::string_view::npos &&
        iequals(trim(line.substr(0, colon)), "Accept-Encoding") &&
        value_accepts_gzip(line.substr(colon + 1))) {
      return true;
    }
  }
  return false;
}

}  // namespace memtide::daemon
