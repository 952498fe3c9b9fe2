#include <algorithm>
#include <cmath>
#include <cstdio>

#include <memtide/core/text.hpp>
#include <memtide/report/svg_plot.hpp>

namespace memtide::report {

namespace {

constexpr double kPanelWidth = 420;
constexpr double kPanelHeight = 240;
constexpr double kMarginLeft = 52;
constexpr double kMarginRight = 12;
constexpr double kMarginTop = 28;
constexpr double kMarginBottom = 34;
constexpr double kTitleHeight = 36;
// Distinct colours for series (a series takes the colour of its place in the panel).
constexpr const char* kColours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

std::string escape(const std::string& text) {
  std::string out;
  for (const char c : to_valid_utf8(text)) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        // Control characters are not allowed in XML 1.0.
        out += static_cast<unsigned char>(c) < 0x20 ? ' ' : c;
    }
  }
  return out;
}

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

// A round step for about four ticks up to `top`.
double tick_step(double top) {
  if (top <= 0) {
    return 1;
  }
  const double raw = top / 4;
  const double magnitude = std::pow(10, std::floor(std::log10(raw)));
  for (const double m : {1.0, 2.0, 5.0, 10.0}) {
    if (raw <= m * magnitude) {
      return m * magnitude;
    }
  }
  return 10 * magnitude;
}

// `v` with as many decimals as a tick `step` needs (0.05 steps: two).
std::string tick_label(double v, double step) {
  const int decimals = step >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(step) - 1e-9));
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

// The largest finite (x, y) of a panel's series.
std::pair<double, double> extent(const PlotPanel& p) {
  double x_max = 0;
  double y_max = 0;
  for (const auto& s : p.series) {
    for (const auto& [x, y] : s.points) {
      if (std::isfinite(x) && std::isfinite(y)) {
        x_max = std::max(x_max, x);
        y_max = std::max(y_max, y);
      }
    }
  }
  return {x_max, y_max};
}

// One panel at (left, top), its axes up to (x_max, y_max) rounded up to a tick.
std::string panel_svg(const PlotPanel& p, double left, double top, double x_max, double y_max) {
  const double x_step = tick_step(x_max);
  const double y_step = tick_step(y_max);
  x_max = std::max(x_step, std::ceil(x_max / x_step) * x_step);
  y_max = std::max(y_step, std::ceil(y_max / y_step) * y_step);
  const double w = kPanelWidth - kMarginLeft - kMarginRight;
  const double h = kPanelHeight - kMarginTop - kMarginBottom;
  const double x0 = left + kMarginLeft;
  const double y0 = top + kMarginTop + h;
  const auto px = [&](double x) { return x0 + w * x / x_max; };
  const auto py = [&](double y) { return y0 - h * y / y_max; };
  std::string out = "<text x=\"" + number(left + kPanelWidth / 2) + "\" y=\"" + number(top + 18) +
                    "\" text-anchor=\"middle\" font-weight=\"bold\">" + escape(p.title) +
                    "</text>\n";
  // Ticks by count, not by adding steps (a float loop counter drifts).
  const auto y_ticks = static_cast<int>(std::lround(y_max / y_step));
  for (int i = 0; i <= y_ticks; ++i) {
    const double y = y_step * i;
    out += "<line x1=\"" + number(x0) + "\" x2=\"" + number(x0 + w) + "\" y1=\"" + number(py(y)) +
           "\" y2=\"" + number(py(y)) + "\" stroke=\"#ddd\"/>\n<text x=\"" + number(x0 - 4) +
           "\" y=\"" + number(py(y) + 4) + "\" text-anchor=\"end\">" + tick_label(y, y_step) +
           "</text>\n";
  }
  const auto x_ticks = static_cast<int>(std::lround(x_max / x_step));
  for (int i = 0; i <= x_ticks; ++i) {
    const double x = x_step * i;
    out += "<text x=\"" + number(px(x)) + "\" y=\"" + number(y0 + 14) +
           "\" text-anchor=\"middle\">" + tick_label(x, x_step) + "</text>\n";
  }
  out += "<text x=\"" + number(x0 + w / 2) + "\" y=\"" + number(y0 + 28) +
         "\" text-anchor=\"middle\">" + escape(p.x_label) + "</text>\n<text x=\"" +
         number(left + 12) + "\" y=\"" + number(top + kMarginTop + h / 2) +
         "\" text-anchor=\"middle\" transform=\"rotate(-90 " + number(left + 12) + " " +
         number(top + kMarginTop + h / 2) + ")\">" + escape(p.y_label) + "</text>\n";
  out += "<rect x=\"" + number(x0) + "\" y=\"" + number(y0 - h) + "\" width=\"" + number(w) +
         "\" height=\"" + number(h) + "\" fill=\"none\" stroke=\"#888\"/>\n";
  for (std::size_t i = 0; i < p.series.size(); ++i) {
    std::string points;
    for (const auto& [x, y] : p.series[i].points) {
      if (std::isfinite(x) && std::isfinite(y)) {
        points += number(px(x)) + "," + number(py(y)) + " ";
      }
    }
    out += "<polyline fill=\"none\" stroke-width=\"1.5\" stroke=\"" +
           std::string(kColours[i % std::size(kColours)]) + "\" points=\"" + points + "\"><title>" +
           escape(p.series[i].name) + "</title></polyline>\n";
  }
  return out;
}

// The series names of the last panel that has the most of them (callers put the panel of many
// lines, such as the guests', last), with their colours.
std::string legend_svg(const std::vector<PlotPanel>& panels, double top, std::size_t* lines) {
  const PlotPanel* widest = nullptr;
  for (const auto& p : panels) {
    if (widest == nullptr || p.series.size() >= widest->series.size()) {
      widest = &p;
    }
  }
  std::string out;
  *lines = 0;
  if (widest == nullptr) {
    return out;
  }
  constexpr double kEntryWidth = 140;
  constexpr std::size_t kPerLine = 8;
  for (std::size_t i = 0; i < widest->series.size(); ++i) {
    const double x = 12 + kEntryWidth * static_cast<double>(i % kPerLine);
    const std::size_t line = i / kPerLine;
    const double y = top + 16 * static_cast<double>(line);
    out += "<rect x=\"" + number(x) + "\" y=\"" + number(y - 9) +
           "\" width=\"14\" height=\"4\" fill=\"" + kColours[i % std::size(kColours)] +
           "\"/><text x=\"" + number(x + 18) + "\" y=\"" + number(y) + "\">" +
           escape(widest->series[i].name) + "</text>\n";
  }
  *lines = (widest->series.size() + kPerLine - 1) / kPerLine;
  return out;
}

}  // namespace

std::string svg_plot(const std::string& title, const std::vector<PlotPanel>& panels,
                     std::size_t columns) {
  columns = std::max<std::size_t>(1, std::min(columns, std::max<std::size_t>(1, panels.size())));
  const std::size_t rows = (panels.size() + columns - 1) / columns;
  // The panels of a row share their scales, so that side by side they compare at a glance.
  std::vector<std::pair<double, double>> row_extent(rows, {0, 0});
  for (std::size_t i = 0; i < panels.size(); ++i) {
    const auto [x, y] = extent(panels[i]);
    auto& r = row_extent[i / columns];
    r = {std::max(r.first, x), std::max(r.second, y)};
  }
  std::string body;
  for (std::size_t i = 0; i < panels.size(); ++i) {
    const auto [x_max, y_max] = row_extent[i / columns];
    const std::size_t row = i / columns;
    body += panel_svg(panels[i], kPanelWidth * static_cast<double>(i % columns),
                      kTitleHeight + kPanelHeight * static_cast<double>(row), x_max, y_max);
  }
  const double legend_top = kTitleHeight + kPanelHeight * static_cast<double>(rows) + 16;
  std::size_t legend_lines = 0;
  body += legend_svg(panels, legend_top, &legend_lines);
  const double width = kPanelWidth * static_cast<double>(columns);
  const double height = legend_top + 16 * static_cast<double>(legend_lines) + 8;
  return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
         "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" +
         number(width) + "\" height=\"" + number(height) + "\" viewBox=\"0 0 " + number(width) +
         " " + number(height) +
         "\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" "
         "fill=\"white\"/>\n<text x=\"" +
         number(width / 2) + "\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">" +
         escape(title) + "</text>\n" + body + "</svg>\n";
}

}  // namespace memtide::report
