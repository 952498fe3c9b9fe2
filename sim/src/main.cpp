// memtide-sim: runs the evaluation scenarios under memtide's policy and the two comparison
// policies and prints one table row per (scenario, overcommit ratio, policy).
#include <algorithm>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>

#include <nlohmann/json.hpp>

#include <memtide/config/loader.hpp>
#include <memtide/core/progress.hpp>
#include <memtide/report/svg_plot.hpp>
#include <memtide/sim/run.hpp>

using namespace memtide;
using namespace memtide::sim;

namespace {

const char* kUsage = R"(Usage: memtide-sim [OPTIONS]

Runs host simulations (see sim/include/memtide/sim/world.hpp and scenarios.hpp) under memtide's
policy, oVirt MOM's default balloon rules and Proxmox's automatic ballooning, and prints a
Markdown scoreboard.

Options:
  -c, --config FILE     memtide configuration for its policy (default: built-in defaults)
  -s, --scenario NAME   steady, daily, burst, noisy, boot, squeeze, tmpfs or trickle; repeat for
                        several (default: all)
  -r, --ratio R         overcommit ratio (sum of guest maxima / host RAM); repeat (default:
                        1.0, 1.5, 2.0)
      --random N        instead: N seeded random scenarios, and for each score how often
                        memtide is worse than each baseline, with medians and 90th percentiles
      --seed S          first seed of --random (default 1)
      --virtio-mem      every guest has a virtio-mem device over all but a quarter of its
                        maximum (2 MiB blocks), resized the way memtide's actuator does it
      --free-page-reporting
                        every guest reports its free pages to the host
      --json            one JSON object per line instead of the table
      --plot FILE       also write an SVG of one named scenario at one ratio: host MemAvailable,
                        host swap and every guest's memory over the run, each policy side by side
  -h, --help            this help

Targets checked on the named scenarios (printed after the table; exit code 1 when one is
missed): no more host swap-out and no more guest OOMs than the better of MOM and Proxmox.
)";

std::string fixed(double v, int digits) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(digits) << v;
  return out.str();
}

std::vector<std::unique_ptr<Policy>> all_policies(std::shared_ptr<const config::Config> config) {
  std::vector<std::unique_ptr<Policy>> policies;
  policies.push_back(make_memtide(std::move(config)));
  policies.push_back(make_mom());
  policies.push_back(make_proxmox());
  return policies;
}

nlohmann::json to_json(const Outcome& o, std::uint64_t seed) {
  nlohmann::json j{{"scenario", o.scenario},
                   {"overcommit_ratio", o.overcommit_ratio},
                   {"policy", o.policy},
                   {"seed", seed},
                   {"mean_ballooned_bytes", o.mean_ballooned_bytes()},
                   {"min_available_bytes", o.totals.min_available_bytes},
                   {"refused_commands", o.totals.refused_commands}};
  for (const auto& score : scores()) {
    j[score.name] = score.of(o.totals);
  }
  return j;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) {
    return 0;
  }
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(p * static_cast<double>(v.size() - 1))];
}

// What --virtio-mem and --free-page-reporting make of each scenario before it runs.
using Adjust = std::function<void(Scenario&)>;

// --random: every score's distribution per policy and how often memtide is worse.
int run_random(const std::shared_ptr<const config::Config>& config, std::uint64_t first, int count,
               bool json, const Adjust& adjust) {
  const auto& all = scores();
  // results[policy][score] over scenarios
  std::vector<std::vector<std::vector<double>>> results(
      3, std::vector<std::vector<double>>(all.size()));
  std::vector<std::string> names;
  ProgressLine progress;
  for (int k = 0; k < count; ++k) {
    progress.show("scenario " + std::to_string(k + 1) + " of " + std::to_string(count));
    Scenario sc = make_random_scenario(first + static_cast<std::uint64_t>(k));
    adjust(sc);
    auto policies = all_policies(config);
    names.clear();
    for (std::size_t p = 0; p < policies.size(); ++p) {
      const Outcome o = run(sc, *policies[p]);
      names.push_back(o.policy);
      for (std::size_t i = 0; i < all.size(); ++i) {
        results[p][i].push_back(all[i].of(o.totals));
      }
      if (json) {
        std::cout << to_json(o, sc.seed).dump() << '\n';
      }
    }
  }
  progress.clear();
  if (json) {
    return 0;
  }
  std::cout << "Random scenarios: " << count << " (seeds " << first << ".."
            << first + static_cast<std::uint64_t>(count) - 1 << ")\n\n"
            << "| score | memtide median / p90 | MOM median / p90 | Proxmox median / p90 | "
               "memtide worse than MOM | memtide worse than Proxmox |\n"
               "| --- | --- | --- | --- | --- | --- |\n";
  for (std::size_t i = 0; i < all.size(); ++i) {
    std::cout << "| " << all[i].name
              << (all[i].unit[0] != 0 ? std::string(" (") + all[i].unit + ")" : "") << " |";
    for (std::size_t p = 0; p < 3; ++p) {
      std::cout << ' ' << fixed(percentile(results[p][i], 0.5), 2) << " / "
                << fixed(percentile(results[p][i], 0.9), 2) << " |";
    }
    for (std::size_t p = 1; p < 3; ++p) {
      int worse = 0;
      for (int k = 0; k < count; ++k) {
        worse += results[0][i][static_cast<std::size_t>(k)] >
                         results[p][i][static_cast<std::size_t>(k)] + all[i].tie
                     ? 1
                     : 0;
      }
      std::cout << ' ' << fixed(100.0 * worse / count, 1) << " % |";
    }
    std::cout << '\n';
  }
  return 0;
}

struct SimArgs {
  std::shared_ptr<const config::Config> config = config::default_config();
  std::vector<std::string> scenarios;  // all when empty
  std::vector<double> ratios;          // 1, 1.5 and 2 when empty
  bool json = false;
  int random = 0;  // random scenarios to run instead of the named ones
  std::uint64_t seed = 1;
  bool virtio_mem = false;
  bool free_page_reporting = false;
  std::string plot;  // --plot FILE: "" none
};

// The command line into `args`; the exit code to end with at once (help, errors), else nullopt.
std::optional<int> parse_args(int argc, char** argv, SimArgs& args) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "memtide-sim: " << a << " needs a value\n";
        std::exit(64);
      }
      return argv[++i];
    };
    auto number = [&](const std::string& v) -> double {
      try {
        std::size_t used = 0;
        const double d = std::stod(v, &used);
        if (used == v.size()) {
          return d;
        }
      } catch (const std::exception&) {
      }
      std::cerr << "memtide-sim: bad number '" << v << "' for " << a << "\n";
      std::exit(64);
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
      args.config = loaded.config;
    } else if (a == "-s" || a == "--scenario") {
      args.scenarios.push_back(value());
    } else if (a == "-r" || a == "--ratio") {
      args.ratios.push_back(number(value()));
    } else if (a == "--random") {
      const double n = number(value());
      if (!(n >= 1 && n <= 1'000'000)) {
        std::cerr << "memtide-sim: --random needs 1..1000000 scenarios\n";
        return 64;
      }
      args.random = static_cast<int>(n);
    } else if (a == "--seed") {
      const double n = number(value());
      if (!(n >= 0 && n <= 1e15)) {
        std::cerr << "memtide-sim: --seed needs 0..1e15\n";
        return 64;
      }
      args.seed = static_cast<std::uint64_t>(n);
    } else if (a == "--json") {
      args.json = true;
    } else if (a == "--plot") {
      args.plot = value();
    } else if (a == "--virtio-mem") {
      args.virtio_mem = true;
    } else if (a == "--free-page-reporting") {
      args.free_page_reporting = true;
    } else {
      std::cerr << "memtide-sim: unexpected argument '" << a << "'\nTry 'memtide-sim --help'.\n";
      return 64;
    }
  }
  return std::nullopt;
}

// Where memtide did worse than the better of MOM and Proxmox on `outcomes` (memtide's first):
// more host swap-out (beyond 0.01 GiB) or more guest OOMs.
void add_misses(const std::string& where, const std::vector<Outcome>& outcomes,
                std::vector<std::string>& missed) {
  const Totals& m = outcomes[0].totals;
  const Totals& mom = outcomes[1].totals;
  const Totals& pve = outcomes[2].totals;
  const double best_swap = std::min(mom.host_swap_out_bytes, pve.host_swap_out_bytes);
  if (m.host_swap_out_bytes > best_swap + 0.01 * static_cast<double>(GiB)) {
    missed.push_back(where + ": host swap-out " +
                     fixed(m.host_swap_out_bytes / static_cast<double>(GiB), 2) +
                     " GiB, the better baseline " + fixed(best_swap / static_cast<double>(GiB), 2));
  }
  const auto best_ooms = std::min(mom.guest_ooms, pve.guest_ooms);
  if (m.guest_ooms > best_ooms) {
    missed.push_back(where + ": " + std::to_string(m.guest_ooms) +
                     " guest OOMs, the better baseline " + std::to_string(best_ooms));
  }
}

// The named scenarios at each ratio, a table row (or JSON line) per policy; 1 when a target was
// missed.
int run_named(const std::shared_ptr<const config::Config>& config,
              const std::vector<std::string>& scenarios, const std::vector<double>& ratios,
              bool json, const Adjust& adjust) {
  const auto& all = scores();
  if (!json) {
    std::cout << "| scenario | overcommit | policy |";
    for (const auto& score : all) {
      std::cout << ' ' << score.name << (score.unit[0] != 0 ? std::string(" ") + score.unit : "")
                << " |";
    }
    std::cout << " mean ballooned GiB | min MemAvailable GiB |\n|";
    for (std::size_t i = 0; i < all.size() + 5; ++i) {
      std::cout << " --- |";
    }
    std::cout << '\n';
  }
  std::vector<std::string> missed;
  for (const auto& name : scenarios) {
    for (const double ratio : ratios) {
      Scenario scenario;
      try {
        scenario = make_scenario(name, ratio);
        adjust(scenario);
      } catch (const std::invalid_argument& e) {
        std::cerr << "memtide-sim: " << e.what() << '\n';
        return 64;
      }
      std::vector<Outcome> outcomes;
      for (auto& policy : all_policies(config)) {
        outcomes.push_back(run(scenario, *policy));
        const Outcome& o = outcomes.back();
        if (json) {
          std::cout << to_json(o, 0).dump() << '\n';
          continue;
        }
        std::cout << "| " << o.scenario << " | " << fixed(o.overcommit_ratio, 1) << " | "
                  << o.policy << " |";
        for (const auto& score : all) {
          std::cout << ' ' << fixed(score.of(o.totals), 2) << " |";
        }
        std::cout << ' ' << fixed(o.mean_ballooned_bytes() / static_cast<double>(GiB), 2) << " | "
                  << fixed(o.totals.min_available_bytes / static_cast<double>(GiB), 2) << " |\n";
      }
      add_misses(name + " at " + fixed(ratio, 1), outcomes, missed);
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

// --plot: the scenario of `args` under each policy, sampled about 120 times, as an SVG
// of three rows (host MemAvailable, host swap, each guest's memory) by one column per policy.
int write_plot(const SimArgs& args, const Adjust& adjust) {
  Scenario scenario;
  try {
    scenario = make_scenario(args.scenarios[0], args.ratios[0]);
    adjust(scenario);
  } catch (const std::invalid_argument& e) {
    std::cerr << "memtide-sim: " << e.what() << '\n';
    return 64;
  }
  constexpr double kGiBd = static_cast<double>(GiB);
  // About 120 points a line: enough for the eye, and a file small enough to keep in the docs.
  const long every = std::max(10L, static_cast<long>(scenario.duration_s / 120));
  std::vector<report::PlotPanel> available;
  std::vector<report::PlotPanel> swapped;
  std::vector<report::PlotPanel> guests;
  for (auto& policy : all_policies(args.config)) {
    report::PlotPanel a{"MemAvailable: " + policy->name(), "minutes", "GiB", {{"host", {}}}};
    report::PlotPanel w{"host swap: " + policy->name(), "minutes", "GiB", {{"host", {}}}};
    report::PlotPanel g{"guest memory: " + policy->name(), "minutes", "GiB", {}};
    for (const auto& spec : scenario.guests) {
      g.series.push_back({spec.name, {}});
    }
    run(scenario, *policy, [&](const World& world) {
      const double t = world.now();
      if (static_cast<long>(t) % every != 0) {
        return;
      }
      a.series[0].points.emplace_back(t / 60, world.host_available_bytes() / kGiBd);
      w.series[0].points.emplace_back(t / 60, world.host_swapped_bytes() / kGiBd);
      for (std::size_t i = 0; i < world.guests().size(); ++i) {
        const auto& guest = world.guests()[i];
        g.series[i].points.emplace_back(t / 60, guest.running ? guest.balloon / kGiBd : 0);
      }
    });
    available.push_back(std::move(a));
    swapped.push_back(std::move(w));
    guests.push_back(std::move(g));
  }
  std::vector<report::PlotPanel> panels = std::move(available);
  panels.insert(panels.end(), swapped.begin(), swapped.end());
  panels.insert(panels.end(), guests.begin(), guests.end());
  const std::string title =
      "memtide-sim: " + args.scenarios[0] + " at " + fixed(args.ratios[0], 1) + "x overcommit";
  std::ofstream out(args.plot);
  out << report::svg_plot(title, panels, 3);
  if (!out.flush()) {
    std::cerr << "memtide-sim: cannot write " << args.plot << '\n';
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  SimArgs args;
  if (const auto code = parse_args(argc, argv, args)) {
    return *code;
  }
  const Adjust adjust = [&args](Scenario& scenario) {
    if (args.virtio_mem) {
      give_virtio_mem(scenario);
    }
    if (args.free_page_reporting) {
      report_free_pages(scenario);
    }
  };
  if (args.random > 0) {
    return run_random(args.config, args.seed, args.random, args.json, adjust);
  }
  if (!args.plot.empty()) {
    if (args.scenarios.size() != 1 || args.ratios.size() != 1) {
      std::cerr << "memtide-sim: --plot needs one --scenario and one --ratio\n";
      return 64;
    }
    if (const int code = write_plot(args, adjust); code != 0) {
      return code;
    }
  }
  if (args.scenarios.empty()) {
    args.scenarios = scenario_names();
  }
  if (args.ratios.empty()) {
    args.ratios = {1.0, 1.5, 2.0};
  }
  return run_named(args.config, args.scenarios, args.ratios, args.json, adjust);
}
