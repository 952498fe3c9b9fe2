// Reading pseudo-files: OpenFiles keeps procfs and sysfs files open and reads them again in
// place, and opens any other file afresh each time.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <stdlib.h>

#include <memtide/collectors/file_reader.hpp>

namespace memtide::collectors {
namespace {

namespace fs = std::filesystem;

std::size_t open_descriptors() {
  return static_cast<std::size_t>(
      std::distance(fs::directory_iterator("/proc/self/fd"), fs::directory_iterator{}));
}

// The resident-pages field of /proc/self/statm.
std::uint64_t resident_pages(const std::string& statm) {
  return std::stoull(statm.substr(statm.find(' ') + 1));
}

TEST(OpenFiles, AProcfsFileStaysOpenAndShowsWhatChanged) {
  OpenFiles files;
  const auto before_fds = open_descriptors();
  const auto first = files.read("/proc/self/statm");
  ASSERT_TRUE(first.ok()) << first.error().to_string();
  EXPECT_EQ(open_descriptors(), before_fds + 1);  // kept

  std::vector<char> touched(std::size_t{32} << 20);
  for (std::size_t i = 0; i < touched.size(); i += 4096) {
    touched[i] = 1;
  }
  const auto second = files.read("/proc/self/statm");
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(open_descriptors(), before_fds + 1);  // the same descriptor, read again
  EXPECT_GE(resident_pages(*second), resident_pages(*first) + 7000) << *first << " / " << *second;
  EXPECT_EQ(touched[4096], 1);

  // A larger file is read whole again, several reads each time.
  const auto meminfo = files.read("/proc/self/smaps");
  ASSERT_TRUE(meminfo.ok());
  const auto again = files.read("/proc/self/smaps");
  ASSERT_TRUE(again.ok());
  EXPECT_GT(again->size(), 8192u);
  EXPECT_NE(again->find("VmFlags"), std::string::npos);

  EXPECT_FALSE(files.read_optional("/proc/self/no-such-file").value().has_value());
  EXPECT_FALSE(files.read("/proc/self/no-such-file").ok());
}

// A file of a fixture tree is opened for each read: one replaced under its name (a new inode,
// as a rename leaves it) is seen, and nothing stays open.
TEST(OpenFiles, OtherFilesAreOpenedEachTime) {
  char tmpl[] = "/tmp/memtide-files-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string path = dir + "/meminfo";
  std::ofstream(path) << "first\n";
  OpenFiles files;
  const auto before_fds = open_descriptors();
  EXPECT_EQ(files.read(path).value(), "first\n");
  EXPECT_EQ(open_descriptors(), before_fds);
  std::ofstream(dir + "/next") << "second\n";
  ASSERT_EQ(std::rename((dir + "/next").c_str(), path.c_str()), 0);
  EXPECT_EQ(files.read(path).value(), "second\n");
  const auto big = files.read(path, 3);
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.error().to_string().find("larger than 3 bytes"), std::string::npos);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace memtide::collectors
