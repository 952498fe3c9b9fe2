// gzip (RFC 1952) for HTTP responses, and the client's wish for it from its request headers.
#pragma once

#include <string>
#include <string_view>

namespace memtide::daemon {

// `data` as one gzip member at zlib `level` (1 fastest .. 9 smallest). Throws std::bad_alloc
// when zlib cannot allocate; any other zlib failure is a bug and throws std::logic_error.
std::string gzip(std::string_view data, int level);

// The data of `gz`, one whole gzip member (as gzip() makes). Throws std::bad_alloc when zlib or
// the result cannot be allocated, and std::invalid_argument when `gz` is not one whole member.
std::string gunzip(std::string_view gz);

// Whether the request head (request line and headers, CRLF-separated) accepts a gzip body: an
// Accept-Encoding header (any case) listing gzip or *, with a q-value that is not 0.
bool accepts_gzip(std::string_view head);

}  // namespace memtide::daemon
