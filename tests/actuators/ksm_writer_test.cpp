// KSM writes: against a copy of a captured /sys/kernel/mm/ksm tree, and once against this host's
// real one (restoring every value it changed).
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <unistd.h>

#include <memtide/actuators/ksm_writer.hpp>
#include <memtide/collectors/host_source.hpp>

namespace memtide::actuators {
namespace {

namespace fs = std::filesystem;

class KsmTree : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/memtide-ksm-XXXXXX";
    root_ = mkdtemp(tmpl);
    fs::create_directories(root_ + "/kernel/mm");
    fs::copy(std::string(MEMTIDE_FIXTURES) + "/hosts/debian12-6.18/sys/kernel/mm/ksm",
             root_ + "/kernel/mm/ksm");
    put("merge_across_nodes", "1");  // a NUMA kernel's file
    put("run", "1");
  }
  void TearDown() override { fs::remove_all(root_); }
  void put(const std::string& file, const std::string& value) {
    std::ofstream(root_ + "/kernel/mm/ksm/" + file) << value << "\n";
  }
  std::string get(const std::string& file) {
    std::ifstream in(root_ + "/kernel/mm/ksm/" + file);
    std::string v;
    in >> v;
    return v;
  }
  KsmSample current() {
    auto s = collectors::KsmReader(root_).read();
    EXPECT_TRUE(s.ok() && s->has_value());
    return **s;
  }
  std::string root_;
};

TEST_F(KsmTree, WritesOnlyWhatChanges) {
  const KsmSample now = current();
  KsmSettings want;
  want.pages_to_scan = now.pages_to_scan + 100;
  want.sleep_ms = now.sleep_ms;  // unchanged: not written
  want.run = 1;                  // unchanged
  const auto use_zero_before = get("use_zero_pages");
  const auto done = KsmWriter(root_).apply(want, now);
  ASSERT_TRUE(done.ok()) << done.error().to_string();
  ASSERT_EQ(done->size(), 1u);
  EXPECT_EQ((*done)[0], (KsmWrite{"pages_to_scan", std::to_string(now.pages_to_scan),
                                  std::to_string(now.pages_to_scan + 100)}));
  EXPECT_EQ(get("pages_to_scan"), std::to_string(now.pages_to_scan + 100));
  EXPECT_EQ(get("use_zero_pages"), use_zero_before);
  // Applying the same again writes nothing.
  const auto again = KsmWriter(root_).apply(want, current());
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->empty());
}

TEST_F(KsmTree, ValuesOutsideTheKernelsRangesAreRefusedBeforeAnyWrite) {
  const KsmSample now = current();
  const auto pages_before = get("pages_to_scan");
  KsmSettings want;
  want.pages_to_scan = 0;
  want.run = 3;
  want.advisor_max_cpu_percent = 101;
  want.advisor_mode = "fast";
  want.sleep_ms = 10;
  const auto r = KsmWriter(root_).apply(want, now);
  ASSERT_FALSE(r.ok());
  const auto& m = r.error().message;
  EXPECT_NE(m.find("pages_to_scan: 0 is outside 1 .. 4294967295"), std::string::npos) << m;
  EXPECT_NE(m.find("run: 3 is outside 0 .. 2"), std::string::npos) << m;
  EXPECT_NE(m.find("advisor_max_cpu: 101 is outside 1 .. 100"), std::string::npos) << m;
  EXPECT_NE(m.find("advisor_mode: 'fast'"), std::string::npos) << m;
  EXPECT_NE(m.find("(nothing written)"), std::string::npos);
  EXPECT_EQ(get("pages_to_scan"), pages_before);
  EXPECT_EQ(get("sleep_millisecs"), std::to_string(now.sleep_ms));
}

TEST_F(KsmTree, MergeAcrossNodesGoesThroughUnmerging) {
  KsmSettings want;
  want.merge_across_nodes = false;
  want.run = 1;
  const auto done = KsmWriter(root_).apply(want, current());
  ASSERT_TRUE(done.ok()) << done.error().to_string();
  ASSERT_EQ(done->size(), 3u);
  EXPECT_EQ((*done)[0], (KsmWrite{"run", "1", "2"}));
  EXPECT_EQ((*done)[1], (KsmWrite{"merge_across_nodes", "1", "0"}));
  EXPECT_EQ((*done)[2], (KsmWrite{"run", "2", "1"}));
  EXPECT_EQ(get("merge_across_nodes"), "0");
  EXPECT_EQ(get("run"), "1");
}

TEST_F(KsmTree, MissingSettingIsAnError) {
  fs::remove(root_ + "/kernel/mm/ksm/advisor_mode");
  KsmSettings want;
  want.advisor_mode = "scan-time";
  const auto r = KsmWriter(root_).apply(want, current());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("advisor_mode: this kernel has no such setting"),
            std::string::npos);
}

// This host's /sys/kernel/mm/ksm: change two tunables and put them back.
TEST(KsmReal, WritesAndRestoresThisHostsTunables) {
  if (access("/sys/kernel/mm/ksm/pages_to_scan", W_OK) != 0) {
    GTEST_SKIP() << "/sys/kernel/mm/ksm is not writable here";
  }
  const collectors::KsmReader reader("/sys");
  const KsmWriter ksm("/sys");
  auto before = reader.read();
  ASSERT_TRUE(before.ok() && before->has_value());
  const KsmSample original = **before;
  KsmSettings restore;
  restore.pages_to_scan = original.pages_to_scan;
  restore.sleep_ms = original.sleep_ms;
  // Restored however the test ends.
  struct Restorer {
    const collectors::KsmReader& reader;
    const KsmWriter& ksm;
    KsmSettings settings;
    ~Restorer() {
      if (auto now = reader.read(); now.ok() && now->has_value()) {
        (void)ksm.apply(settings, **now);
      }
    }
  } restorer{reader, ksm, restore};
  KsmSettings change;
  change.pages_to_scan = original.pages_to_scan + 7;
  change.sleep_ms = original.sleep_ms + 3;
  const auto done = ksm.apply(change, original);
  ASSERT_TRUE(done.ok()) << done.error().to_string();
  EXPECT_EQ(done->size(), 2u);
  auto during = reader.read();
  ASSERT_TRUE(during.ok() && during->has_value());
  EXPECT_EQ((*during)->pages_to_scan, original.pages_to_scan + 7);
  EXPECT_EQ((*during)->sleep_ms, original.sleep_ms + 3);
  ASSERT_TRUE(ksm.apply(restore, **during).ok());
  auto after = reader.read();
  ASSERT_TRUE(after.ok() && after->has_value());
  EXPECT_EQ((*after)->pages_to_scan, original.pages_to_scan);
  EXPECT_EQ((*after)->sleep_ms, original.sleep_ms);
  EXPECT_EQ((*after)->run, original.run);
}

}  // namespace
}  // namespace memtide::actuators
