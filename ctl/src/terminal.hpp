// Text for a terminal: untrusted names made harmless, measured in columns (not bytes), cut to fit.
#pragma once

#include <cstddef>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace memtide::ctl {

// Columns `s` takes on a terminal, by the C library's wcwidth in a UTF-8 locale (whatever the
// process's locale): 0 for combining marks and zero-width characters, 2 for East Asian wide and
// fullwidth characters and emoji, 1 for the rest. Invalid UTF-8 bytes and characters wcwidth
// calls unprintable count 1 each.
std::size_t display_width(std::string_view s);

// `s` safe to print: valid UTF-8, with control characters (C0, DEL, C1: escape sequences a
// domain name or message could carry) shown as U+FFFD, and format characters (general category
// Cf: bidirectional embeddings, overrides, isolates and marks that reorder what the operator
// reads, zero-width characters) and line separators shown as "<U+202E>".
std::string for_terminal(std::string_view s);

// for_terminal() of each line of `s`, with its line ends kept.
std::string lines_for_terminal(std::string_view s);

// `s` (already for_terminal) cut to at most `columns` columns on a character boundary, ending in
// "…" when cut.
std::string fit(std::string_view s, std::size_t columns);

// Prints `rows` to `out` as columns padded to their widest cell (after for_terminal), measured
// in terminal columns; the last column is not padded, and is cut to what is left of `columns`
// (when known) so that no line wraps.
void print_table(std::vector<std::vector<std::string>> rows, std::optional<std::size_t> columns,
                 std::ostream& out = std::cout);

// The width to fit output to: $COLUMNS when it is a number (as ls and ps take it), else the
// terminal's width when stdout is one, else none (pipes and files get whole lines).
std::optional<std::size_t> output_columns();

// The terminal's height when stdout is one ($LINES first, as output_columns() takes $COLUMNS),
// else none.
std::optional<std::size_t> output_rows();

}  // namespace memtide::ctl
