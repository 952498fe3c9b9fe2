// A private session libvirtd and real TCG guests for end-to-end tests (needs root, libvirtd and
// QEMU; tests are skipped otherwise). Everything is stopped and removed in TearDown, also when a
// test fails.
#pragma once

#include <chrono>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <unistd.h>

#include <memtide/collectors/libvirt_hypervisor.hpp>

#include "../support/run_command.hpp"
#include "../support/sizes.hpp"

namespace memtide::collectors {

using namespace std::chrono_literals;
using memtide::test_sizes::MiB;

using memtide::testing::run_command;

inline std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

class RealGuest : public ::testing::Test {
 public:
  void SetUp() override {
    if (geteuid() != 0 || access("/usr/sbin/libvirtd", X_OK) != 0 ||
        access("/usr/bin/qemu-system-x86_64", X_OK) != 0) {
      GTEST_SKIP() << "needs root, libvirtd and qemu-system-x86_64";
    }
    image_ = std::string(MEMTIDE_E2E_IMAGE_DIR);
    ASSERT_EQ(run_command(std::string(MEMTIDE_SOURCE_DIR) + "/scripts/build-guest-image " + image_ +
                          " >/dev/null && echo built"),
              "built");
    char tmpl[] = "/tmp/memtide-e2e-XXXXXX";
    dir_ = mkdtemp(tmpl);
    uri_ = run_command(std::string(MEMTIDE_SOURCE_DIR) + "/tests/support/session-libvirtd start " +
                       dir_);
    ASSERT_EQ(uri_.rfind("qemu+unix:///session", 0), 0u) << uri_;
  }
  void TearDown() override {
    if (!dir_.empty()) {
      run_command(std::string(MEMTIDE_SOURCE_DIR) + "/tests/support/session-libvirtd stop " + dir_);
    }
  }

  // Starts a transient guest with `mib` MiB that holds `hog_mib` MiB of its memory.
  void start_guest(const std::string& name, int mib, int hog_mib) {
    start_guest(name, mib, std::to_string(hog_mib) + ":1");
  }
  // Starts a transient guest with `mib` MiB running the workload `steps` (MIB:SECONDS,...) with
  // pages filled as `fill` (random, zero or dup; see scripts/build-guest-image).
  // `extra` is more of the domain's XML, e.g. a <memoryBacking> element; `devices` more
  // devices, `cmdline` more of the kernel command line.
  void start_guest(const std::string& name, int mib, const std::string& steps,
                   const std::string& fill = "random", const std::string& extra = "",
                   const std::string& devices = "", const std::string& cmdline = "",
                   const std::string& balloon = "<memballoon model='virtio'/>",
                   bool persistent = false) {
    const std::string xml = "<domain type='qemu'><name>" + name + "</name><memory unit='MiB'>" +
                            std::to_string(mib) + "</memory>" + extra +
                            "<vcpu>1</vcpu>"
                            "<os><type arch='x86_64' machine='pc'>hvm</type><kernel>" +
                            image_ + "/vmlinuz</kernel><initrd>" + image_ +
                            "/initrd.gz</initrd><cmdline>console=ttyS0 "
                            "edd=off quiet memtide.steps=" +
                            steps + " memtide.fill=" + fill + " " + cmdline +
                            "</cmdline></os>"
                            "<devices><serial type='file'><source path='" +
                            dir_ + "/" + name + ".log'/></serial>" + balloon + devices +
                            "</devices></domain>";
    virConnectPtr conn = virConnectOpen(uri_.c_str());
    ASSERT_NE(conn, nullptr);
    virDomainPtr dom = persistent ? virDomainDefineXML(conn, xml.c_str())
                                  : virDomainCreateXML(conn, xml.c_str(), 0);
    ASSERT_NE(dom, nullptr) << virGetLastErrorMessage();
    if (persistent) {
      ASSERT_EQ(virDomainCreate(dom), 0) << virGetLastErrorMessage();
    }
    virDomainFree(dom);
    virConnectClose(conn);
  }

  // Starts a transient guest with `base_mib` MiB of base memory (one NUMA cell) and a virtio-mem
  // device of `device_mib` MiB in 2 MiB blocks, of which `requested_mib` MiB are plugged at
  // boot; the guest onlines what it plugs as movable memory, so it can unplug it again. The
  // domain is persistent unless `persistent` is false: its configuration keeps the requested
  // size a restore returns to (a transient one's comes from memtide's boot record).
  void start_virtio_mem_guest(const std::string& name, int base_mib, int device_mib,
                              int requested_mib, const std::string& steps,
                              const std::string& balloon = "<memballoon model='virtio'/>",
                              bool persistent = true) {
    const std::string base = std::to_string(base_mib);
    start_guest(name, base_mib, steps, "random",
                "<maxMemory slots='2' unit='MiB'>" + std::to_string(base_mib + device_mib + 512) +
                    "</maxMemory><cpu><numa><cell id='0' cpus='0' memory='" + base +
                    "' unit='MiB'/></numa></cpu>",
                "<memory model='virtio-mem'><target><size unit='MiB'>" +
                    std::to_string(device_mib) +
                    "</size><node>0</node><block unit='MiB'>2</block><requested unit='MiB'>" +
                    std::to_string(requested_mib) + "</requested></target></memory>",
                "memhp_default_state=online_movable", balloon, persistent);
  }

  // Collects until `pred` holds for guest `name` or `timeout` passes; returns the last sample.
  template <typename Pred>
  std::optional<VmSample> wait_for(LibvirtHypervisor& h, const std::string& name, Pred pred,
                                   std::chrono::seconds timeout) {
    std::optional<VmSample> last;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (auto r = h.collect(now_ms())) {
        for (const auto& vm : *r) {
          if (vm.name == name) {
            last = vm;
            if (pred(vm)) {
              return last;
            }
          }
        }
      }
      std::this_thread::sleep_for(500ms);
    }
    return last;
  }

  // A file in the test's directory (guest consoles NAME.log, daemon logs), "" when absent.
  std::string file(const std::string& name) const {
    std::ifstream in(dir_ + "/" + name);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  std::string image_;
  std::string dir_;
  std::string uri_;
};

}  // namespace memtide::collectors
