// Line charts as a standalone SVG document, written by hand (no plotting dependency): a grid of
// panels, each with its title, axes, a few ticks and one polyline per series (named in its
// tooltip), and a legend of the series' colours (those of the last panel with the most series).
// memtide-sim --plot and memtidectl simulate --plot draw with it.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace memtide::report {

struct PlotSeries {
  std::string name;
  std::vector<std::pair<double, double>> points;  // (x, y), x increasing
};

struct PlotPanel {
  std::string title;
  std::string x_label;  // e.g. "minutes"
  std::string y_label;  // e.g. "GiB"
  std::vector<PlotSeries> series;
};

// The panels laid out `columns` to a row. Axes start at 0; the panels of a row share their
// scales (up to the row's largest value, rounded up to a tick). Names and titles are escaped.
std::string svg_plot(const std::string& title, const std::vector<PlotPanel>& panels,
                     std::size_t columns);

}  // namespace memtide::report
