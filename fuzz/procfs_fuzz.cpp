// Every /proc and /sys parser. The first byte picks the parser, the rest is the file's text.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <memtide/collectors/page_scanner.hpp>
#include <memtide/collectors/procfs_parsers.hpp>
#include <memtide/collectors/qemu_process.hpp>
#include <memtide/collectors/sysfs_parsers.hpp>
#include <memtide/collectors/virt_facts.hpp>

#include "fuzz_check.hpp"

namespace {

template <typename R>
void check(const R& r) {
  if (!r) {
    memtide::fuzz::require_valid_utf8(r.error().to_string(), "a parser error");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace memtide::collectors;
  if (size == 0) {
    return 0;
  }
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 12) {
    case 0:
      check(parse_meminfo(text));
      break;
    case 1:
      check(parse_vmstat(text, 4096, "vmstat"));
      break;
    case 2:
      check(parse_pressure(text, "pressure"));
      break;
    case 3:
      check(parse_swaps(text, "swaps"));
      break;
    case 4:
      check(parse_process_stat(text, "stat"));
      break;
    case 5:
      check(parse_process_status(text, "status"));
      break;
    case 6:
      check(parse_process_ksm_stat(text, 4096, "ksm_stat"));
      break;
    case 7:
      check(parse_smaps_regions(text, CandidateMemory::mergeable, "smaps"));
      check(parse_smaps_regions(text, CandidateMemory::private_anonymous, "smaps"));
      break;
    case 8:
      check(parse_sysfs_u64(text, "u64"));
      break;
    case 9:
      check(parse_sysfs_i64(text, "i64"));
      break;
    case 10:
      check(parse_sysfs_choice(text, "choice"));
      break;
    default:
      check(parse_module_bool(text, "bool"));
      break;
  }
  return 0;
}
