// Parsers of /proc text: good input, edge cases, and malformed input with the exact line named.
#include <string>

#include <gtest/gtest.h>

#include <memtide/collectors/procfs_parsers.hpp>

#include "../support/sizes.hpp"

namespace memtide::collectors {
namespace {

using memtide::test_sizes::KiB;

const char* kMeminfo =
    "MemTotal:        8054844 kB\n"
    "MemFree:          312548 kB\n"
    "MemAvailable:    2411320 kB\n"
    "Buffers:          120400 kB\n"
    "Cached:          2180656 kB\n"
    "SwapCached:        10240 kB\n"
    "Active(anon):    4212344 kB\n"
    "SwapTotal:       2097148 kB\n"
    "SwapFree:        1048572 kB\n"
    "HugePages_Total:       4\n"
    "Hugepagesize:       2048 kB\n"
    "SomeFutureField:     123 kB\n";

TEST(ParseMeminfo, ConvertsKibToBytesAndKeepsCounts) {
  const auto r = parse_meminfo(kMeminfo);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->total_bytes, 8054844 * KiB);
  EXPECT_EQ(r->free_bytes, 312548 * KiB);
  EXPECT_EQ(r->available_bytes, 2411320 * KiB);
  EXPECT_EQ(r->buffers_bytes, 120400 * KiB);
  EXPECT_EQ(r->cached_bytes, 2180656 * KiB);
  EXPECT_EQ(r->swap_cached_bytes, 10240 * KiB);
  EXPECT_EQ(r->swap_total_bytes, 2097148 * KiB);
  EXPECT_EQ(r->swap_free_bytes, 1048572 * KiB);
  EXPECT_EQ(r->active_anon_bytes, 4212344 * KiB);
  EXPECT_EQ(r->hugepages_total, 4u);  // a count, not KiB
  EXPECT_EQ(r->hugepage_size_bytes, 2048 * KiB);
  EXPECT_FALSE(r->inactive_anon_bytes.has_value());  // absent line stays unavailable
  EXPECT_FALSE(r->hugetlb_bytes.has_value());
}

TEST(ParseMeminfo, AcceptsMissingFinalNewlineAndBlankLines) {
  std::string text = kMeminfo;
  text.pop_back();
  text = "\n" + text;
  const auto r = parse_meminfo(text);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->total_bytes, 8054844 * KiB);
}

TEST(ParseMeminfo, ZeroValuesAreValid) {
  const auto r = parse_meminfo(
      "MemTotal: 0 kB\nMemFree: 0 kB\nMemAvailable: 0 kB\nBuffers: 0 kB\nCached: 0 kB\n"
      "SwapCached: 0 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n");
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->total_bytes, 0u);
}

struct Malformed {
  const char* name;
  std::string text;
  int line;                  // expected line in the error (0: whole file)
  const char* message_part;  // expected substring of the message
};

class MeminfoMalformed : public testing::TestWithParam<Malformed> {};

TEST_P(MeminfoMalformed, NamesFileLineAndProblem) {
  const auto& c = GetParam();
  const auto r = parse_meminfo(c.text, "fixture/meminfo");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().file, "fixture/meminfo");
  EXPECT_EQ(r.error().line, c.line) << r.error().to_string();
  EXPECT_NE(r.error().message.find(c.message_part), std::string::npos) << r.error().to_string();
}

INSTANTIATE_TEST_SUITE_P(
    Cases, MeminfoMalformed,
    testing::Values(
        Malformed{"TruncatedValue", "MemTotal: 100 kB\nMemFree: 5", 2, "expected a value in kB"},
        Malformed{"TruncatedKey", "MemTotal: 100 kB\nMemFr", 2, "expected 'Key: value'"},
        Malformed{"EmptyValue", "MemTotal: 100 kB\nMemFree:\n", 2, "missing value"},
        Malformed{"NonNumeric", "MemTotal: 1O0 kB\n", 1, "not a non-negative integer"},
        Malformed{"Negative", "MemTotal: -100 kB\n", 1, "not a non-negative integer"},
        Malformed{"WrongUnit", "MemTotal: 100 MB\n", 1, "expected a value in kB"},
        Malformed{"HugeBeyond64Bits", "MemTotal: 99999999999999999999 kB\n", 1,
                  "not a non-negative integer"},
        Malformed{"HugeOverflowsInBytes", "MemTotal: 18446744073709551 kB\n", 1, "value too large"},
        Malformed{"Duplicate", "MemTotal: 1 kB\nMemTotal: 2 kB\n", 2, "appears twice"},
        Malformed{"MissingMemAvailable",
                  "MemTotal: 1 kB\nMemFree: 1 kB\nBuffers: 0 kB\nCached: 0 kB\n"
                  "SwapCached: 0 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n",
                  0, "MemAvailable is missing"},
        Malformed{"Empty", "", 0, "MemTotal is missing"},
        Malformed{"Binary",
                  std::string("\x7f"
                              "ELF\x02\x01\x01\0\0\0",
                              10),
                  1, "expected 'Key: value'"}),
    [](const auto& p) { return std::string(p.param.name); });

const char* kVmstat =
    "nr_free_pages 78137\n"
    "workingset_refault_anon 10\n"
    "workingset_refault_file 32\n"
    "pswpin 3\n"
    "pswpout 5\n"
    "pgfault 123456789\n"
    "pgmajfault 4321\n"
    "pgscan_kswapd 7\n"
    "pgsteal_direct 2\n"
    "allocstall_dma32 2\n"
    "allocstall_normal 7\n"
    "oom_kill 1\n";

TEST(ParseVmstat, ConvertsPagesToBytesAndSumsSplitCounters) {
  const auto r = parse_vmstat(kVmstat, 4096);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->swap_in_bytes_total, 3u * 4096);
  EXPECT_EQ(r->swap_out_bytes_total, 5u * 4096);
  EXPECT_EQ(r->page_faults_total, 123456789u);  // events, not pages
  EXPECT_EQ(r->major_faults_total, 4321u);
  EXPECT_EQ(r->scan_kswapd_bytes_total, 7u * 4096);
  EXPECT_EQ(r->steal_direct_bytes_total, 2u * 4096);
  EXPECT_FALSE(r->scan_direct_bytes_total.has_value());
  EXPECT_EQ(r->allocstall_total, 9u);
  EXPECT_EQ(r->workingset_refault_bytes_total, 42u * 4096);
  EXPECT_EQ(r->oom_kills_total, 1u);
}

TEST(ParseVmstat, UsesThePageSizeGiven) {
  const auto r = parse_vmstat(kVmstat, 65536);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->swap_out_bytes_total, 5u * 65536);
}

TEST(ParseVmstat, KernelWithoutSwapHasZeroSwapCounters) {
  const auto r = parse_vmstat("pgfault 1\npgmajfault 2\n", 4096);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->swap_in_bytes_total, 0u);
  EXPECT_EQ(r->swap_out_bytes_total, 0u);
  EXPECT_FALSE(r->oom_kills_total.has_value());
}

TEST(ParseVmstat, MalformedInputNamesTheLine) {
  struct Case {
    std::string text;
    int line;
    const char* part;
  };
  const Case cases[] = {
      {"pgfault 1\npgmajfault 12x4\n", 2, "not a non-negative integer"},
      {"pgfault 1\npgmajfault\n", 2, "expected 'key value'"},
      {"pgfault 1\npgmajfault \n", 2, "missing value"},
      {"pgfault 1\npgmajfault 2\npswpout 18446744073709551615\n", 3, "value too large"},
      {"pgfault 1\npgfault 2\npgmajfault 1\n", 2, "appears twice"},
      {"pgfault 1\n", 0, "pgmajfault is missing"},
      {"allocstall_dma 18446744073709551615\nallocstall_normal 1\n", 2, "overflows"},
  };
  for (const auto& c : cases) {
    const auto r = parse_vmstat(c.text, 4096, "vm");
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_EQ(r.error().line, c.line) << r.error().to_string();
    EXPECT_NE(r.error().message.find(c.part), std::string::npos) << r.error().to_string();
  }
}

TEST(ParsePressure, ReadsSomeAndFullAsRatiosAndSeconds) {
  const auto r = parse_pressure(
      "some avg10=1.60 avg60=0.16 avg300=100.00 total=5203978\n"
      "full avg10=0.00 avg60=0.01 avg300=0.25 total=1500000\n",
      "psi");
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_DOUBLE_EQ(r->some.avg10_ratio, 0.016);
  EXPECT_DOUBLE_EQ(r->some.avg60_ratio, 0.0016);
  EXPECT_DOUBLE_EQ(r->some.avg300_ratio, 1.0);
  EXPECT_DOUBLE_EQ(r->some.total_seconds, 5.203978);
  ASSERT_TRUE(r->full.has_value());
  EXPECT_DOUBLE_EQ(r->full->avg60_ratio, 0.0001);
  EXPECT_DOUBLE_EQ(r->full->total_seconds, 1.5);
}

TEST(ParsePressure, FullIsOptional) {
  // cpu pressure before Linux 5.13 has only the "some" line.
  const auto r = parse_pressure("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n", "cpu");
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->full.has_value());
}

TEST(ParsePressure, MalformedInputNamesTheLine) {
  struct Case {
    std::string text;
    int line;
    const char* part;
  };
  const Case cases[] = {
      {"some avg10=abc avg60=0.00 avg300=0.00 total=0\n", 1, "avg10"},
      {"some avg10=0.00 avg60=0.00 avg300=0.00\n", 1, "total is missing"},
      {"some avg10=0.00 avg60=0.00 avg300=0.00 total=1\nfull avg10=101.00 avg60=0 avg300=0 "
       "total=0\n",
       2, "percentage"},
      {"some avg10=0.00 avg60=0.00 avg300=0.00 total=-1\n", 1, "total"},
      {"full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n", 0, "'some' line is missing"},
      {"some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nsome avg10=0.00 avg60=0.00 "
       "avg300=0.00 total=0\n",
       2, "twice"},
      {"partial avg10=0.00\n", 1, "'some' or 'full'"},
      {"some avg10=0.00 avg60 avg300=0.00 total=0\n", 1, "name=value"},
      {"some avg10=0.00 avg60=0.00 avg300=0.00 total=99999999999999999999\n", 1, "total"},
  };
  for (const auto& c : cases) {
    const auto r = parse_pressure(c.text, "psi");
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_EQ(r.error().line, c.line) << r.error().to_string();
    EXPECT_NE(r.error().message.find(c.part), std::string::npos) << r.error().to_string();
  }
}

TEST(ParseSwaps, ReadsRowsAndDecodesEscapedPaths) {
  const auto r = parse_swaps(
      "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
      "/dev/sda2                               partition\t2097148\t\t1048576\t\t-1\n"
      "/var/swap\\040file                       file\t\t1024\t\t0\t\t5\n");
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0], (SwapDevice{"/dev/sda2", "partition", 2097148 * KiB, 1048576 * KiB, -1}));
  EXPECT_EQ((*r)[1], (SwapDevice{"/var/swap file", "file", 1024 * KiB, 0, 5}));
}

TEST(ParseSwaps, HeaderOnlyMeansNoSwap) {
  const auto r = parse_swaps("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->empty());
}

TEST(ParseSwaps, MalformedInputNamesTheLine) {
  const std::string header = "Filename Type Size Used Priority\n";
  struct Case {
    std::string text;
    int line;
    const char* part;
  };
  const Case cases[] = {
      {"", 1, "header"},
      {"/dev/sda2 partition 1 0 -1\n", 1, "header"},
      {header + "/dev/sda2 partition 2097148\n", 2, "5 columns"},
      {header + "/dev/sda2 partition 2097148 x -1\n", 2, "non-negative"},
      {header + "/dev/sda2 partition 2097148 0 high\n", 2, "Priority"},
      {header + "/dev/sda2 partition 18446744073709551615 0 1\n", 2, "too large"},
  };
  for (const auto& c : cases) {
    const auto r = parse_swaps(c.text, "swaps");
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_EQ(r.error().line, c.line) << r.error().to_string();
    EXPECT_NE(r.error().message.find(c.part), std::string::npos) << r.error().to_string();
  }
}

TEST(ParseProcessStat, CommWithSpacesAndParenthesesAndCpuTicks) {
  // Fields after the command: state ppid pgrp session tty tpgid flags minflt cminflt majflt
  // cmajflt utime(14) stime(15) ...
  const auto k = parse_process_stat(
      "49 (ksmd) S 2 0 0 0 -1 2097216 0 0 0 0 1234 56 0 0 25 5 1 0 30 0 0\n", "stat");
  ASSERT_TRUE(k.ok()) << k.error().to_string();
  EXPECT_EQ(k->comm, "ksmd");
  EXPECT_EQ(k->cpu_ticks, 1290u);
  const auto odd = parse_process_stat("7 (a) b (c)) R 1 1 1 0 -1 0 0 0 0 0 3 4 0\n", "stat");
  ASSERT_TRUE(odd.ok());
  EXPECT_EQ(odd->comm, "a) b (c)");
  EXPECT_EQ(odd->cpu_ticks, 7u);
  EXPECT_FALSE(parse_process_stat("12 (short) S 1 2\n", "stat").ok());
  EXPECT_FALSE(parse_process_stat("no parentheses", "stat").ok());
}

}  // namespace
}  // namespace memtide::collectors
