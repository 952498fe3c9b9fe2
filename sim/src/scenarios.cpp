#include <cmath>
#include <numbers>
#include <stdexcept>

#include <memtide/sim/scenarios.hpp>

namespace memtide::sim {

namespace {

struct Workload {
  const char* kind;
  double anon_gib;
  double cache_gib;
};
constexpr Workload kMix[] = {
    {"idle", 0.5, 2.0}, {"web", 1.0, 1.0}, {"db", 2.0, 1.2}, {"batch", 1.4, 0.5}};

constexpr double kGiB = static_cast<double>(GiB);

}  // namespace

std::vector<std::string> scenario_names() {
  return {"steady", "daily", "burst", "noisy", "boot"};
}

Scenario make_scenario(const std::string& name, double ratio) {
  if (!(ratio > 0 && ratio <= 8)) {
    throw std::invalid_argument("overcommit ratio must be in (0, 8]");
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
    g.name = std::string(w.kind) + "-" + (i < 10 ? "0" : "") + std::to_string(i);
    g.max_bytes = guest_max;
    g.floor_bytes = guest_max * 3 / 10;
    g.cache_limit_bytes = static_cast<std::uint64_t>(w.cache_gib * kGiB);
    const double base = w.anon_gib * kGiB;
    if (name == "steady") {
      g.demand_bytes = [base](double) { return base; };
    } else if (name == "daily") {
      const double phase = static_cast<double>(i % 3) * 0.3;
      g.demand_bytes = [base, phase](double t) {
        const double day = std::sin(2 * std::numbers::pi * t / 3600.0 + phase);
        return base * (0.5 + 0.8 * std::max(0.0, day));
      };
    } else if (name == "burst") {
      const bool bursting = i % 3 == 0;
      g.demand_bytes = [base, bursting](double t) {
        if (!bursting || t < 600 || t >= 1200) {
          return base;
        }
        const double ramp = std::min(1.0, (t - 600) / 20.0);
        return base + ramp * (3.4 * kGiB - base);
      };
    } else if (name == "noisy") {
      if (i == 0) {
        g.name = "noisy-00";
        g.demand_bytes = [](double t) {
          // A fixed pseudo-random sequence (64-bit LCG) of demands, one per 20 s.
          std::uint64_t x = static_cast<std::uint64_t>(t / 20.0) * 6364136223846793005ULL +
                            1442695040888963407ULL;
          x ^= x >> 33;
          x *= 0xff51afd7ed558ccdULL;
          x ^= x >> 33;
          const double u = static_cast<double>(x % 1'000'000) / 1'000'000.0;
          return (0.3 + u * 3.3) * kGiB;
        };
      } else {
        g.demand_bytes = [base](double) { return base; };
      }
    } else if (name == "boot") {
      g.start_s = 5.0 * static_cast<double>(i);
      const double start = g.start_s;
      const double touch = 0.9 * static_cast<double>(guest_max);
      g.demand_bytes = [base, start, touch](double t) { return t - start < 30 ? touch : base; };
    } else {
      throw std::invalid_argument("unknown scenario '" + name + "'");
    }
    s.guests.push_back(std::move(g));
  }
  s.duration_s = name == "daily" ? 7200 : name == "boot" ? 1200 : 1800;
  return s;
}

}  // namespace memtide::sim
