#!/usr/bin/env python3
"""Every link in README.md and docs/*.md resolves: a relative link names a file of the tree, and
an anchor (#name) names a heading of its page as GitHub spells anchors (lower case, punctuation
dropped, spaces as hyphens, -N suffixes for repeats). Links to the web are not followed.
Also: README.md stays short (the reference lives in docs/), and the shipped alerting rules'
runbook links name headings of docs/runbooks.md.

Usage: links_test.py SOURCE_DIR    (exit 0: all resolve; 1: each broken link listed)
"""
import os
import re
import sys

README_MAX_LINES = 200


def slug(heading):
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors_of(path):
    anchors, seen, fence = set(), {}, False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("```"):
                fence = not fence
            m = None if fence else re.match(r"^(#{1,6}) (.*)$", line.rstrip("\n"))
            if m:
                base = slug(m.group(2))
                n = seen.get(base, 0)
                seen[base] = n + 1
                anchors.add(base if n == 0 else f"{base}-{n}")
    return anchors


def links_of(path):
    fence = False
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.startswith("```"):
                fence = not fence
                continue
            if fence:
                continue
            line = re.sub(r"`[^`]*`", "", line)  # code spans hold no links
            for m in re.finditer(r"\]\(([^)\s]+)\)", line):
                yield number, m.group(1)


def main(src):
    pages = [os.path.join(src, "README.md")]
    docs = os.path.join(src, "docs")
    pages += sorted(os.path.join(docs, p) for p in os.listdir(docs) if p.endswith(".md"))
    broken, checked = [], 0
    for page in pages:
        for number, target in links_of(page):
            if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
                continue
            checked += 1
            where = f"{os.path.relpath(page, src)}:{number}: {target}"
            file_part, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(page), file_part)) if file_part else page
            if not os.path.exists(dest):
                broken.append(where + ": no such file")
            elif anchor and (not dest.endswith(".md") or anchor not in anchors_of(dest)):
                broken.append(where + ": no such heading")
    with open(pages[0], encoding="utf-8") as f:
        readme_lines = sum(1 for _ in f)
    if readme_lines > README_MAX_LINES:
        broken.append(f"README.md: {readme_lines} lines; keep it under {README_MAX_LINES} "
                      "and the reference in docs/")
    runbooks = anchors_of(os.path.join(docs, "runbooks.md"))
    rules = os.path.join(src, "packaging", "prometheus", "memtide-alerts.yml")
    with open(rules, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            m = re.search(r"runbook_url: *(\S+)", line)
            if not m:
                continue
            checked += 1
            url = m.group(1)
            if not url.startswith("file:///usr/share/doc/memtide/runbooks.md#"):
                broken.append(f"{rules}:{number}: {url}: not the installed runbooks page")
            elif url.partition("#")[2] not in runbooks:
                broken.append(f"{rules}:{number}: {url}: no such runbook")
    for b in broken:
        print("BROKEN:", b)
    print(f"links_test: {checked} links checked in {len(pages)} pages, {len(broken)} broken")
    return 1 if broken or checked < 50 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
