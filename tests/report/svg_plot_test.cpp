// The SVG charts of memtide-sim --plot and memtidectl simulate --plot.
#include <gtest/gtest.h>

#include <memtide/report/svg_plot.hpp>

namespace memtide::report {
namespace {

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) {
    ++n;
  }
  return n;
}

TEST(SvgPlot, OneLinePerSeriesPanelsSideBySideAndNamesEscaped) {
  const PlotSeries rising{"a<b & \"c\"\x01", {{0, 0}, {1, 2}, {2, 4}}};
  const PlotSeries flat{"flat", {{0, 1}, {2, 1}}};
  const PlotSeries low{"low", {{0, 0.5}, {2, 0.5}}};
  const auto svg = svg_plot("title <x>",
                            {{"left", "minutes", "GiB", {rising, flat}},
                             {"right", "minutes", "GiB", {low}},
                             {"below", "minutes", "GiB", {low}}},
                            2);
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
  EXPECT_EQ(count(svg, "<polyline"), 4u);
  EXPECT_EQ(count(svg, "<svg"), 1u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  // Untrusted names are escaped, control characters dropped.
  EXPECT_NE(svg.find("a&lt;b &amp; &quot;c&quot; "), std::string::npos);
  EXPECT_EQ(svg.find("a<b"), std::string::npos);
  EXPECT_EQ(svg.find('\x01'), std::string::npos);
  EXPECT_NE(svg.find("title &lt;x&gt;"), std::string::npos);
  // Two panels to a row: 840 wide; two rows of panels.
  EXPECT_NE(svg.find("width=\"840.0\""), std::string::npos);
  // The row shares its scale: "right" (at most 0.5) is drawn up to "left"'s 4 too, so the tick
  // "4" appears in both panels of the first row; "below", alone in its row, ends at 0.6 (0.5
  // rounded up to its ticks of 0.2).
  EXPECT_EQ(count(svg, "text-anchor=\"end\">4</text>"), 2u);
  EXPECT_EQ(count(svg, "text-anchor=\"end\">0.6</text>"), 1u);
}

TEST(SvgPlot, EmptyAndNonFiniteSeriesDrawNothingBroken) {
  const PlotSeries odd{"odd", {{0, std::nan("")}, {1, 1}}};
  const auto svg = svg_plot("t", {{"p", "x", "y", {odd, {"none", {}}}}}, 3);
  EXPECT_EQ(svg.find("nan"), std::string::npos);
  EXPECT_EQ(count(svg, "<polyline"), 2u);
}

}  // namespace
}  // namespace memtide::report
