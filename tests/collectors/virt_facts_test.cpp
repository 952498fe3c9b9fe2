// Virtualization facts from trees built on disk, and from this host's /sys.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include <memtide/collectors/virt_facts.hpp>

namespace memtide::collectors {
namespace {

namespace fs = std::filesystem;

class SysTree : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/memtide-virt-XXXXXX";
    root_ = mkdtemp(tmpl);
  }
  void TearDown() override { fs::remove_all(root_); }
  void write(const std::string& rel, const std::string& text) {
    fs::create_directories(fs::path(root_ + rel).parent_path());
    std::ofstream(root_ + rel) << text;
  }
  std::string root_;
};

TEST_F(SysTree, IntelWithEpt) {
  write("/module/kvm_intel/parameters/ept", "Y\n");
  write("/kernel/mm/transparent_hugepage/enabled", "always madvise [never]\n");
  const auto f = read_virt_facts(root_);
  ASSERT_TRUE(f.ok()) << f.error().to_string();
  EXPECT_EQ(f->paging, "ept");
  EXPECT_EQ(f->thp_mode, "never");
}

TEST_F(SysTree, AmdWithNptOffIsShadowPaging) {
  write("/module/kvm_amd/parameters/npt", "0\n");
  const auto f = read_virt_facts(root_);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->paging, "shadow");
  EXPECT_EQ(f->thp_mode, std::nullopt);
}

TEST_F(SysTree, NoKvmModuleAndMalformedFiles) {
  EXPECT_EQ(read_virt_facts(root_)->paging, std::nullopt);
  write("/module/kvm_intel/parameters/ept", "maybe\n");
  const auto bad = read_virt_facts(root_);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().file, root_ + "/module/kvm_intel/parameters/ept");
  EXPECT_NE(bad.error().message.find("'maybe'"), std::string::npos);
}

TEST(VirtFacts, ThisHostsThpModeMatchesItsSysfs) {
  std::ifstream in("/sys/kernel/mm/transparent_hugepage/enabled");
  if (!in) {
    GTEST_SKIP() << "no THP on this kernel";
  }
  std::string line;
  std::getline(in, line);
  const auto open = line.find('[');
  const auto close = line.find(']');
  ASSERT_NE(open, std::string::npos);
  const auto f = read_virt_facts("/sys");
  ASSERT_TRUE(f.ok()) << f.error().to_string();
  EXPECT_EQ(f->thp_mode, line.substr(open + 1, close - open - 1));
}

}  // namespace
}  // namespace memtide::collectors
