// Baseline for scripts/bench: the memory libvirt's test driver itself takes for a host file
// (it keeps every domain definition in the calling process). memtided's own share is its RSS
// minus this.
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>

#include <libvirt/libvirt.h>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: test_driver_rss test:///PATH.xml\n";
    return 64;
  }
  virConnectPtr conn = virConnectOpen(argv[1]);
  if (conn == nullptr) {
    return 1;
  }
  virDomainPtr* domains = nullptr;
  const int n = virConnectListAllDomains(conn, &domains, 0);
  for (int i = 0; i < n; ++i) {
    virDomainFree(domains[i]);
  }
  free(domains);  // NOLINT: allocated by libvirt
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0 || line.rfind("RssAnon:", 0) == 0) {
      std::cout << line << '\n';
    }
  }
  virConnectClose(conn);
  return 0;
}
