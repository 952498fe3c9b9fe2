// memtide-sim: runs the evaluation scenarios under memtide's policy and the two comparison
// policies and prints one table row per (scenario, overcommit ratio, policy).
#include <iomanip>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include <memtide/config/loader.hpp>
#include <memtide/sim/run.hpp>

using namespace memtide;
using namespace memtide::sim;

namespace {

const char* kUsage = R"(Usage: memtide-sim [OPTIONS]

Runs host simulations (see sim/include/memtide/sim/scenarios.hpp) under memtide's policy, oVirt
MOM's default balloon rules and Proxmox AutoBalloon, and prints a Markdown table.

Options:
  -c, --config FILE     memtide configuration for its policy (default: built-in defaults)
  -s, --scenario NAME   steady, daily, burst, noisy or boot; repeat for several (default: all)
  -r, --ratio R         overcommit ratio (sum of guest maxima / host RAM); repeat (default:
                        1.0, 1.5, 2.0)
      --json            one JSON object per line instead of the table
  -h, --help            this help

Targets checked (printed after the table; exit code 1 when one is missed): memtide has no host
swap wherever a comparison policy has none, less host swap than both elsewhere, and at most
1.5 x MOM's balloon actions (three per guest where MOM never acts).
)";

std::string gib(double bytes) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(2) << bytes / static_cast<double>(GiB);
  return out.str();
}

std::string fixed1(double v) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(1) << v;
  return out.str();
}

}  // namespace

int main(int argc, char** argv) {
  std::shared_ptr<const config::Config> config = config::default_config();
  std::vector<std::string> scenarios;
  std::vector<double> ratios;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "memtide-sim: " << a << " needs a value\n";
        std::exit(64);
      }
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      return 0;
    }
    if (a == "-c" || a == "--config") {
      const auto loaded = config::load_config_file(value());
      if (!loaded.ok()) {
        for (const auto& e : loaded.errors) {
          std::cerr << e.to_string() << '\n';
        }
        return 2;
      }
      config = loaded.config;
    } else if (a == "-s" || a == "--scenario") {
      scenarios.push_back(value());
    } else if (a == "-r" || a == "--ratio") {
      const std::string v = value();
      try {
        ratios.push_back(std::stod(v));
      } catch (const std::exception&) {
        std::cerr << "memtide-sim: bad ratio '" << v << "'\n";
        return 64;
      }
    } else if (a == "--json") {
      json = true;
    } else {
      std::cerr << "memtide-sim: unexpected argument '" << a << "'\nTry 'memtide-sim --help'.\n";
      return 64;
    }
  }
  if (scenarios.empty()) {
    scenarios = scenario_names();
  }
  if (ratios.empty()) {
    ratios = {1.0, 1.5, 2.0};
  }

  if (!json) {
    std::cout << "| scenario | overcommit | policy | host swap-out GiB | guest pressure VM-min | "
                 "guest swap-out GiB | mean ballooned GiB | balloon actions | min MemAvailable "
                 "GiB |\n"
                 "| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n";
  }
  std::vector<std::string> missed;
  for (const auto& name : scenarios) {
    for (const double ratio : ratios) {
      Scenario scenario;
      try {
        scenario = make_scenario(name, ratio);
      } catch (const std::invalid_argument& e) {
        std::cerr << "memtide-sim: " << e.what() << '\n';
        return 64;
      }
      std::vector<std::unique_ptr<Policy>> policies;
      policies.push_back(make_memtide(config));
      policies.push_back(make_mom());
      policies.push_back(make_proxmox());
      std::vector<Outcome> outcomes;
      for (auto& policy : policies) {
        outcomes.push_back(run(scenario, *policy));
        const Outcome& o = outcomes.back();
        const Totals& t = o.totals;
        if (json) {
          std::cout << nlohmann::json{{"scenario", o.scenario},
                                      {"overcommit_ratio", o.overcommit_ratio},
                                      {"policy", o.policy},
                                      {"host_swap_out_bytes", t.host_swap_out_bytes},
                                      {"guest_pressure_seconds", t.guest_pressure_seconds},
                                      {"guest_swap_out_bytes", t.guest_swap_out_bytes},
                                      {"mean_ballooned_bytes", o.mean_ballooned_bytes()},
                                      {"balloon_actions", t.balloon_actions},
                                      {"min_available_bytes", t.min_available_bytes}}
                           .dump()
                    << '\n';
        } else {
          std::cout << "| " << o.scenario << " | " << fixed1(o.overcommit_ratio) << " | "
                    << o.policy << " | " << gib(t.host_swap_out_bytes) << " | "
                    << fixed1(t.guest_pressure_seconds / 60) << " | " << gib(t.guest_swap_out_bytes)
                    << " | " << gib(o.mean_ballooned_bytes()) << " | " << t.balloon_actions << " | "
                    << gib(t.min_available_bytes) << " |\n";
        }
      }
      const Totals& m = outcomes[0].totals;
      const Totals& mom = outcomes[1].totals;
      const Totals& pve = outcomes[2].totals;
      const std::string where = name + " at " + fixed1(ratio);
      const bool any_baseline_clean = mom.host_swap_out_bytes == 0 || pve.host_swap_out_bytes == 0;
      if (any_baseline_clean && m.host_swap_out_bytes > 0) {
        missed.push_back(where + ": host swap " + gib(m.host_swap_out_bytes) +
                         " GiB where a comparison policy has none");
      } else if (!any_baseline_clean && !(m.host_swap_out_bytes < mom.host_swap_out_bytes &&
                                          m.host_swap_out_bytes < pve.host_swap_out_bytes)) {
        missed.push_back(where + ": host swap " + gib(m.host_swap_out_bytes) +
                         " GiB, not below both comparison policies");
      }
      const std::uint64_t most_actions =
          mom.balloon_actions > 0 ? mom.balloon_actions * 3 / 2 : 3 * scenario.guests.size();
      if (m.balloon_actions > most_actions) {
        missed.push_back(where + ": " + std::to_string(m.balloon_actions) +
                         " balloon actions, MOM " + std::to_string(mom.balloon_actions));
      }
    }
  }
  if (!json) {
    std::cout << '\n' << (missed.empty() ? "targets: all met\n" : "targets missed:\n");
    for (const auto& m : missed) {
      std::cout << "  " << m << '\n';
    }
  }
  return missed.empty() ? 0 : 1;
}
