#include "http_server.hpp"

#include <cerrno>
#include <cstring>

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace memtide::daemon {

namespace {

constexpr const char* kMetricsType = "text/plain; version=0.0.4; charset=utf-8";
constexpr const char* kIndex =
    "memtided: memory-overcommit daemon for KVM hosts. Metrics: /metrics\n";

MHD_Response* static_response(const char* body, const char* type) {
  MHD_Response* r = MHD_create_response_from_buffer(std::strlen(body), const_cast<char*>(body),
                                                    MHD_RESPMEM_PERSISTENT);
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  return r;
}

void release_page(void* holder) {
  delete static_cast<std::shared_ptr<const std::string>*>(holder);
}

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

struct MetricsServerAccess {
  static MHD_Result handle(void* self, MHD_Connection* connection, const char* url,
                           const char* method, const char* version, const char* upload_data,
                           std::size_t* upload_data_size, void** request_state);
};

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
    int listen_fd, std::shared_ptr<const std::string> first_page) {
  std::unique_ptr<MetricsServer> server(new MetricsServer());
  server->description_ = describe_socket(listen_fd, &server->port_);
  server->index_ = static_response(kIndex, "text/plain; charset=utf-8");
  server->not_found_ = static_response("not found; try /metrics\n", "text/plain; charset=utf-8");
  server->bad_method_ = static_response("only GET and HEAD\n", "text/plain; charset=utf-8");
  MHD_add_response_header(server->bad_method_, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
  server->publish(std::move(first_page));
  server->mhd_ =
      MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, nullptr, nullptr,
                       &MetricsServerAccess::handle, server.get(), MHD_OPTION_LISTEN_SOCKET,
                       listen_fd, MHD_OPTION_THREAD_POOL_SIZE, 2u, MHD_OPTION_CONNECTION_LIMIT,
                       kMaxConnections, MHD_OPTION_CONNECTION_TIMEOUT, kIdleTimeoutSeconds,
                       MHD_OPTION_CONNECTION_MEMORY_LIMIT, std::size_t{32} * 1024, MHD_OPTION_END);
  if (server->mhd_ == nullptr) {
    close(listen_fd);
    return Error{server->description_, 0, 0, "cannot start the HTTP server"};
  }
  return server;
}

MetricsServer::~MetricsServer() {
  if (mhd_ != nullptr) {
    MHD_stop_daemon(mhd_);  // joins its threads and closes the listening socket
  }
  for (MHD_Response* r : {metrics_, index_, not_found_, bad_method_}) {
    if (r != nullptr) {
      MHD_destroy_response(r);
    }
  }
}

void MetricsServer::publish(std::shared_ptr<const std::string> page) {
  auto* holder = new std::shared_ptr<const std::string>(std::move(page));
  MHD_Response* next = MHD_create_response_from_buffer_with_free_callback_cls(
      (*holder)->size(), const_cast<char*>((*holder)->data()), &release_page, holder);
  if (next == nullptr) {
    delete holder;
    return;  // out of memory: keep serving the previous page
  }
  MHD_add_response_header(next, MHD_HTTP_HEADER_CONTENT_TYPE, kMetricsType);
  MHD_Response* previous = nullptr;
  {
    std::lock_guard lock(mutex_);
    previous = metrics_;
    metrics_ = next;
  }
  // Connections still sending the previous page hold their own reference to it.
  if (previous != nullptr) {
    MHD_destroy_response(previous);
  }
}

MHD_Result MetricsServerAccess::handle(void* self, MHD_Connection* connection, const char* url,
                                       const char* method, const char*, const char*,
                                       std::size_t* upload_data_size, void** request_state) {
  auto* server = static_cast<MetricsServer*>(self);
  // First call per request: headers only. Answer then; any body is discarded by libmicrohttpd.
  if (*request_state == nullptr) {
    *request_state = server;
  }
  *upload_data_size = 0;
  const bool get = std::strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
                   std::strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
  if (!get) {
    return MHD_queue_response(connection, MHD_HTTP_METHOD_NOT_ALLOWED, server->bad_method_);
  }
  if (std::strcmp(url, "/metrics") == 0) {
    std::lock_guard lock(server->mutex_);
    return MHD_queue_response(connection, MHD_HTTP_OK, server->metrics_);
  }
  if (std::strcmp(url, "/") == 0) {
    return MHD_queue_response(connection, MHD_HTTP_OK, server->index_);
  }
  return MHD_queue_response(connection, MHD_HTTP_NOT_FOUND, server->not_found_);
}

}  // namespace memtide::daemon
