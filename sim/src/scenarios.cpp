#include <algorithm>
#include <cmath>
#include <numbers>
#include <random>
#include <stdexcept>

#include <memtide/sim/scenarios.hpp>

namespace memtide::sim {

namespace {

struct Workload {
  const char* kind;
  double anon_gib;
  double read_gib;
  double working_set_gib;
};
constexpr Workload kMix[] = {{"idle", 0.5, 2.0, 0.3},
                             {"web", 1.0, 1.0, 0.6},
                             {"db", 2.0, 1.2, 0.9},
                             {"batch", 1.4, 0.5, 0.2}};

constexpr double kGiB = static_cast<double>(GiB);

Curve constant(double v) {
  return [v](double) { return v; };
}

// A fixed pseudo-random value in [0, 1) for step `n` of stream `salt` (64-bit mix).
double hash01(std::uint64_t n, std::uint64_t salt) {
  std::uint64_t x =
      n * 6364136223846793005ULL + 1442695040888963407ULL + salt * 0x9e3779b97f4a7c15ULL;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return static_cast<double>(x % 1'000'000) / 1'000'000.0;
}

Curve daily(double base, double phase, double period_s) {
  return [base, phase, period_s](double t) {
    const double day = std::sin(2 * std::numbers::pi * t / period_s + phase);
    return base * (0.5 + 0.8 * std::max(0.0, day));
  };
}

Curve burst(double base, double peak, double start_s, double hold_s, double ramp_s) {
  return [=](double t) {
    if (t < start_s || t >= start_s + ramp_s + hold_s) {
      return base;
    }
    const double ramp = std::min(1.0, (t - start_s) / ramp_s);
    return base + ramp * (peak - base);
  };
}

Curve noisy(double low, double high, double every_s, std::uint64_t salt) {
  return [=](double t) {
    return low + hash01(static_cast<std::uint64_t>(t / every_s), salt) * (high - low);
  };
}

Curve booting(double base, double start_s, double touch) {
  return [=](double t) { return t - start_s < 30 ? touch : base; };
}

std::string numbered(const std::string& kind, std::size_t i) {
  return kind + "-" + (i < 10 ? "0" : "") + std::to_string(i);
}

}  // namespace

std::vector<std::string> scenario_names() {
  return {"steady", "daily", "burst", "noisy", "boot", "squeeze", "tmpfs", "trickle"};
}

Scenario make_scenario(const std::string& name, double ratio) {
  if (!(ratio > 0 && ratio <= 8)) {
    throw std::invalid_argument("overcommit ratio must be in (0, 8]");
  }
  const auto names = scenario_names();
  if (std::find(names.begin(), names.end(), name) == names.end()) {
    throw std::invalid_argument("unknown scenario '" + name + "'");
  }
  Scenario s;
  s.name = name;
  s.overcommit_ratio = ratio;
  const std::uint64_t guest_max = 4 * GiB;
  const auto count = static_cast<std::size_t>(
      std::llround(ratio * static_cast<double>(s.host.ram_bytes) / static_cast<double>(guest_max)));
  for (std::size_t i = 0; i < count; ++i) {
    const Workload& w = kMix[i % 4];
    GuestSpec g;
    g.name = numbered(w.kind, i);
    g.max_bytes = guest_max;
    g.floor_bytes = guest_max * 3 / 10;
    g.cache_limit_bytes = static_cast<std::uint64_t>(w.read_gib * kGiB);
    g.file_working_set_bytes = constant(w.working_set_gib * kGiB);
    g.shmem_bytes = constant(64.0 * MiB);
    const double base = w.anon_gib * kGiB;
    g.demand_bytes = constant(base);
    if (name == "daily") {
      g.demand_bytes = daily(base, static_cast<double>(i % 3) * 0.3, 3600);
    } else if (name == "burst" && i % 3 == 0) {
      g.demand_bytes = burst(base, 3.4 * kGiB, 600, 580, 20);
    } else if (name == "noisy" && i == 0) {
      g.name = "noisy-00";
      g.demand_bytes = noisy(0.3 * kGiB, 3.6 * kGiB, 20, 1);
    } else if (name == "boot") {
      g.start_s = 5.0 * static_cast<double>(i);
      g.demand_bytes = booting(base, g.start_s, 0.9 * static_cast<double>(guest_max));
    } else if (name == "tmpfs") {
      if (i % 4 == 0) {
        g.shmem_bytes = burst(64.0 * MiB, 64.0 * MiB + 600.0 * MiB, 720, 300, 6);
      }
      if (i % 2 == 1) {
        g.swap_bytes = 0;
      }
    }
    s.guests.push_back(std::move(g));
  }
  if (name == "squeeze") {
    s.host.squeezes.push_back({600, 600, s.host.ram_bytes / 4});
  } else if (name == "trickle") {
    s.host.swap_trickle_bytes_per_s = 16.0 * 1024;
  }
  s.duration_s = name == "daily" ? 7200 : name == "boot" ? 1200 : name == "tmpfs" ? 1500 : 1800;
  return s;
}

namespace {

// A random workload shape for guest `g` (maximum `max`, anonymous memory `anon`), drawn from
// `rng` in a fixed order so that a seed always gives the same scenario.
void random_demand(GuestSpec& g, std::mt19937_64& rng, double anon, double max,
                   std::uint64_t noise_seed) {
  auto uniform = [&rng](double lo, double hi) {
    return std::uniform_real_distribution<double>(lo, hi)(rng);
  };
  const double start = uniform(0, 300);
  switch (std::uniform_int_distribution<int>(0, 5)(rng)) {
    case 0:
      g.demand_bytes = constant(anon);
      break;
    case 1:
      g.demand_bytes = daily(anon, uniform(0, 6.28), uniform(600, 1800));
      break;
    case 2:
      g.demand_bytes = burst(anon, std::min(max * 0.85, anon * uniform(1.5, 3)), start + 200,
                             uniform(60, 600), uniform(5, 60));
      break;
    case 3:
      g.demand_bytes =
          noisy(anon * 0.5, std::min(max * 0.85, anon * 2), uniform(10, 60), noise_seed);
      break;
    case 4:
      g.start_s = start;
      g.demand_bytes = booting(anon, start, max * 0.9);
      break;
    default:
      g.demand_bytes = constant(anon);
      g.shmem_bytes = burst(std::min(max * 0.02, 256.0 * MiB), max * uniform(0.1, 0.3), start + 300,
                            uniform(60, 300), uniform(2, 10));
      break;
  }
}

}  // namespace

Scenario make_random_scenario(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto uniform = [&rng](double lo, double hi) {
    return std::uniform_real_distribution<double>(lo, hi)(rng);
  };
  auto chance = [&rng](double p) { return std::bernoulli_distribution(p)(rng); };
  auto pick = [&rng](std::initializer_list<double> values) {
    const auto i = std::uniform_int_distribution<std::size_t>(0, values.size() - 1)(rng);
    return *(values.begin() + static_cast<std::ptrdiff_t>(i));
  };
  Scenario s;
  s.name = "random";
  s.seed = seed;
  s.duration_s = 1200;
  s.host.ram_bytes = static_cast<std::uint64_t>(pick({16, 32, 64, 128})) * GiB;
  const double ram = static_cast<double>(s.host.ram_bytes);
  s.host.overhead_bytes = static_cast<std::uint64_t>(ram * uniform(0.01, 0.08));
  s.host.swappiness = static_cast<int>(pick({10, 60, 100}));
  s.host.reserve_bytes = 2 * GiB;
  if (chance(0.4)) {
    s.host.squeezes.push_back({uniform(200, 800), uniform(120, 400),
                               static_cast<std::uint64_t>(ram * uniform(0.05, 0.3))});
  }
  if (chance(0.3)) {
    s.host.swap_trickle_bytes_per_s = uniform(1024, 64.0 * 1024);
  }
  s.overcommit_ratio = uniform(1.0, 2.5);
  const bool reporting = chance(0.3);
  // Dimensions added later draw from a stream of their own, so every earlier draw (and so every
  // earlier scenario of a seed) stays as it was.
  std::mt19937_64 later(seed ^ 0x9e3779b97f4a7c15ULL);
  const bool deflating = std::bernoulli_distribution(0.3)(later);  // balloons with autodeflate
  std::uniform_real_distribution<double> mapped(0.0, 1.0);  // each guest's mmap share of reads
  double total_max = 0;
  for (std::size_t i = 0; total_max < s.overcommit_ratio * ram && i < 256; ++i) {
    GuestSpec g;
    const double max_gib =
        std::min(std::round(std::exp(uniform(0.0, std::log(64.0)))), ram / kGiB / 2);
    g.max_bytes = static_cast<std::uint64_t>(std::max(1.0, max_gib) * kGiB);
    const double max = static_cast<double>(g.max_bytes);
    g.floor_bytes = static_cast<std::uint64_t>(max * uniform(0.1, 0.5));
    g.shares = static_cast<std::uint32_t>(pick({500, 1000, 1000, 2000}));
    g.kernel_bytes = static_cast<std::uint64_t>(std::min(max * 0.05, 256.0 * MiB) + 64.0 * MiB);
    g.swap_bytes = static_cast<std::uint64_t>(pick({0, 0.5, 1, 2}) * kGiB);
    g.free_page_reporting = reporting;
    g.autodeflate = deflating;
    g.stats_period_s = pick({2, 5, 10});
    const double anon = max * uniform(0.1, 0.6);
    const double read = max * uniform(0.05, 0.5);
    g.cache_limit_bytes = static_cast<std::uint64_t>(read);
    g.file_working_set_bytes = constant(read * uniform(0.1, 0.8));
    g.shmem_bytes = constant(std::min(max * 0.02, 256.0 * MiB));
    g.mapped_read_share = mapped(later);
    random_demand(g, rng, anon, max, seed * 1000 + i);
    g.name = numbered("vm", i);
    total_max += max;
    s.guests.push_back(std::move(g));
  }
  return s;
}

void give_virtio_mem(Scenario& scenario, std::uint64_t block_bytes) {
  for (auto& g : scenario.guests) {
    g.virtio_mem_block_bytes = block_bytes;
    g.virtio_mem_base_bytes = g.max_bytes / 4 / block_bytes * block_bytes;
    g.max_bytes = g.virtio_mem_base_bytes +
                  (g.max_bytes - g.virtio_mem_base_bytes) / block_bytes * block_bytes;
  }
}

void report_free_pages(Scenario& scenario) {
  for (auto& g : scenario.guests) {
    g.free_page_reporting = true;
  }
}

}  // namespace memtide::sim
