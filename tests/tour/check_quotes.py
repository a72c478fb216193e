#!/usr/bin/env python3
"""Checks that the guided tour (docs/tour/*.md) still quotes the real code.

    check_quotes.py REPO_ROOT     check every chapter; exit 1 listing each failure
    check_quotes.py --self-test   check this checker on a small made-up tour

A quote is a marker line naming a file (relative to the repository root),
followed at once by a fenced code block:

    <!-- quote: autograd/engine.cpp -->
    ```cpp
    ...lines copied from autograd/engine.cpp...
    ```

The block's lines must appear in that file as consecutive lines, exactly
(trailing spaces ignored). When they do not, the failure names the chapter
and its line, the file, and the first line of the excerpt that differs from
the file's closest match. Also checked: every relative link of a chapter
points to a file or folder that exists, and every numbered chapter
(NN_name.md) quotes at least once and names an example tour_NN_... whose
source examples/tour/NN_....cpp exists.

Plain python3, standard library only.
"""
import os
import re
import sys
import tempfile

MARKER = re.compile(r"^<!--\s*quote:\s*(\S+)\s*-->\s*$")
FENCE = re.compile(r"^(```+|~~~+)")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CHAPTER = re.compile(r"^(\d\d)_[a-z0-9_]+\.md$")


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip() for line in f.read().split("\n")]


def quotes_of(lines):
    """Yields (marker line number, file named, excerpt lines) for each quote,
    or (line number, None, error text) for a marker without a fenced block."""
    i = 0
    while i < len(lines):
        m = MARKER.match(lines[i])
        if not m:
            i += 1
            continue
        start = i + 1
        fence = FENCE.match(lines[start]) if start < len(lines) else None
        if not fence:
            yield i + 1, None, "a quote marker must be followed at once by a fenced code block"
            i += 1
            continue
        end = start + 1
        while end < len(lines) and not lines[end].startswith(fence.group(1)):
            end += 1
        if end == len(lines):
            yield i + 1, None, "the quote's code block is never closed"
            return
        yield i + 1, m.group(1), lines[start + 1:end]
        i = end + 1


def first_difference(excerpt, source):
    """None if excerpt is a run of consecutive lines of source; else a text
    naming the first excerpt line that differs from the closest match."""
    if not excerpt:
        return "the excerpt is empty"
    best_len, best_at = -1, 0
    for at in range(len(source)):
        n = 0
        while n < len(excerpt) and at + n < len(source) and source[at + n] == excerpt[n]:
            n += 1
        if n == len(excerpt):
            return None
        if n > best_len:
            best_len, best_at = n, at
    if best_len == 0:
        return "excerpt line 1 is not in the file: {!r}".format(excerpt[0])
    file_line = best_at + best_len
    found = source[file_line] if file_line < len(source) else "(end of file)"
    return ("first differing line: excerpt line {} {!r} vs file line {} {!r} (the closest match starts at "
            "file line {})".format(best_len + 1, excerpt[best_len], file_line + 1, found, best_at + 1))


def check_chapter(root, path):
    failures = []
    name = os.path.relpath(path, root)
    lines = read_lines(path)
    sources = {}
    n_quotes = 0
    for line_no, quoted, excerpt in quotes_of(lines):
        where = "{}:{}".format(name, line_no)
        if quoted is None:
            failures.append("{}: {}".format(where, excerpt))
            continue
        n_quotes += 1
        file = os.path.join(root, quoted)
        if not os.path.isfile(file):
            failures.append("{}: quotes {}, which does not exist".format(where, quoted))
            continue
        if file not in sources:
            sources[file] = read_lines(file)
        diff = first_difference(excerpt, sources[file])
        if diff:
            failures.append("{}: the quote of {} no longer matches: {}".format(where, quoted, diff))
    for line_no, line in enumerate(lines, 1):
        for target in LINK.findall(line):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue
            target_path = os.path.normpath(os.path.join(os.path.dirname(path), target.split("#")[0]))
            if not os.path.exists(target_path):
                failures.append("{}:{}: the link {} leads nowhere".format(name, line_no, target))
    chapter = CHAPTER.match(os.path.basename(path))
    if chapter:
        nn = chapter.group(1)
        if n_quotes == 0:
            failures.append("{}: a chapter must quote the code at least once".format(name))
        examples = re.findall(r"\btour_{}_([a-z0-9_]+)".format(nn), "\n".join(lines))
        if not examples:
            failures.append("{}: the chapter names no example tour_{}_...".format(name, nn))
        for example in sorted(set(examples)):
            source = os.path.join(root, "examples", "tour", "{}_{}.cpp".format(nn, example))
            if not os.path.isfile(source):
                failures.append("{}: names tour_{}_{}, but {} does not exist".format(
                    name, nn, example, os.path.relpath(source, root)))
    return failures, n_quotes


def check_tour(root):
    tour = os.path.join(root, "docs", "tour")
    chapters = sorted(f for f in os.listdir(tour) if f.endswith(".md"))
    failures, total = [], 0
    for f in chapters:
        fails, n = check_chapter(root, os.path.join(tour, f))
        failures += fails
        total += n
    return failures, total, len(chapters)


def self_test():
    """A made-up repository: one source file, one chapter with a good quote,
    a stale quote, a quote of a missing file, a dead link and no example."""
    with tempfile.TemporaryDirectory() as root:
        os.makedirs(os.path.join(root, "docs", "tour"))
        os.makedirs(os.path.join(root, "src"))
        with open(os.path.join(root, "src", "a.cpp"), "w") as f:
            f.write("int one() {\n  return 1;\n}\n\nint two() {\n  return 2;\n}\n")
        chapter = "\n".join([
            "# 01 A chapter",                      # 1
            "<!-- quote: src/a.cpp -->",           # 2
            "```cpp",
            "int two() {",
            "  return 2;   ",                      # trailing spaces are ignored
            "}",
            "```",
            "<!-- quote: src/a.cpp -->",           # 8
            "```cpp",
            "int one() {",
            "  return 11;",
            "}",
            "```",
            "<!-- quote: src/gone.cpp -->",        # 14
            "```cpp",
            "x",
            "```",
            "See [a](../../src/a.cpp) and [b](../../src/b.cpp).",  # 18
            "<!-- quote: src/a.cpp -->",           # 19
            "not a fence",
            "",
        ])
        with open(os.path.join(root, "docs", "tour", "01_chapter.md"), "w") as f:
            f.write(chapter)
        failures, total, _ = check_tour(root)
        expected = [
            "docs/tour/01_chapter.md:8: the quote of src/a.cpp no longer matches: first differing line: "
            "excerpt line 2 '  return 11;' vs file line 2 '  return 1;' (the closest match starts at file line 1)",
            "docs/tour/01_chapter.md:14: quotes src/gone.cpp, which does not exist",
            "docs/tour/01_chapter.md:19: a quote marker must be followed at once by a fenced code block",
            "docs/tour/01_chapter.md:18: the link ../../src/b.cpp leads nowhere",
            "docs/tour/01_chapter.md: the chapter names no example tour_01_...",
        ]
        ok = failures == expected and total == 3
        for f in failures:
            print("  reported: " + f)
        if not ok:
            print("self-test FAILED: expected exactly")
            for f in expected:
                print("  " + f)
            return 1
        print("self-test passed: a good quote passes; a stale quote, a missing file, a marker without a block, "
              "a dead link and a missing example are each reported")
        return 0


def main(argv):
    if len(argv) == 2 and argv[1] == "--self-test":
        return self_test()
    if len(argv) != 2:
        print(__doc__)
        return 2
    failures, total, chapters = check_tour(os.path.abspath(argv[1]))
    for f in failures:
        print(f)
    if failures:
        print("{} problem(s) in the tour".format(len(failures)))
        return 1
    print("{} quotes in {} files of docs/tour match the code".format(total, chapters))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
