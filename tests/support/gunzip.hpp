// Reads a gzip body back with zlib's own inflate, for tests of what memtided gzips.
#pragma once

#include <string>

#include <zlib.h>

namespace memtide::testing {

// The data of the single gzip member `gz`; "" (and *ok false) when it is not valid gzip or has
// bytes after the member.
inline std::string gunzip(const std::string& gz, bool* ok = nullptr) {
  z_stream z{};
  if (inflateInit2(&z, 15 + 16) != Z_OK) {  // windowBits 15 + 16: gzip framing
    if (ok != nullptr) {
      *ok = false;
    }
    return "";
  }
  std::string out;
  char buf[65536];
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(gz.data()));
  z.avail_in = static_cast<uInt>(gz.size());
  int rc = Z_OK;
  while (rc == Z_OK) {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    rc = inflate(&z, Z_NO_FLUSH);
    out.append(buf, sizeof buf - z.avail_out);
  }
  const bool whole = rc == Z_STREAM_END && z.avail_in == 0;
  inflateEnd(&z);
  if (ok != nullptr) {
    *ok = whole;
  }
  return whole ? out : "";
}

}  // namespace memtide::testing
