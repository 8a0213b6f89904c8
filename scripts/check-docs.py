#!/usr/bin/env python3
"""Docs stay inside the repository: the link rule for README.md and docs/**/*.md.

1. Every link a reader can click (inline [text](target), images, reference
   definitions, <autolinks>, HTML href/src) is a relative path to a file or folder
   tracked in the repository; a #fragment must name a heading of the target page
   (GitHub's heading ids). No http(s), mailto or absolute links.
2. Outside code, no http:// or https:// URL to a real host: renderers turn bare URLs
   into links. Allowed are only hosts that lead nowhere: the names reserved for
   examples (example.com, .net, .org and their subdomains, *.example, *.test,
   *.invalid) and loopback (localhost, 127.x.x.x, [::1]). Any other URL, a
   configuration value or an example, goes in code (`...` or a fenced block), where
   it is text, not a link.

Usage: check-docs.py [FILE.md ...]   (default: README.md and every docs/**/*.md in git)
       check-docs.py --self-test     (proves the checks fail on bad input)
Exit status 1 when any rule is broken; each problem is printed as file:line: what.
"""
import os
import re
import subprocess
import sys
import tempfile
import unicodedata

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
INLINE_LINK = re.compile(r"!?\[((?:[^\[\]]|\[[^\]]*\])*)\]\(\s*(<[^>]*>|[^)\s]*)(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(\S+)")
AUTOLINK = re.compile(r"<([a-zA-Z][a-zA-Z0-9+.-]{1,31}:[^<>\s]*)>")
HTML_ATTRIBUTE = re.compile(r"\b(?:href|src)\s*=\s*[\"']([^\"']*)[\"']", re.IGNORECASE)
BARE_URL = re.compile(r"https?://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*)", re.IGNORECASE)
HARMLESS_HOST = re.compile(r"^(localhost|127(\.\d{1,3}){3}|\[::1\]|example\.(com|net|org)"
                           r"|.+\.example\.(com|net|org)|.+\.(example|test|invalid|localhost))$",
                           re.IGNORECASE)
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


def tracked_paths(root):
    """Files tracked by git and the folders holding them (relative, '/'-separated)."""
    try:
        out = subprocess.run(["git", "-C", root, "ls-files", "-z"], check=True,
                             capture_output=True).stdout.decode("utf-8")
        files = {name for name in out.split("\0") if name}
    except (OSError, subprocess.CalledProcessError):
        files = set()
        for folder, _, names in os.walk(root):
            if "/.git" in folder or "/build" in folder:
                continue
            for name in names:
                files.add(os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/"))
    folders = {""}
    for name in files:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            folders.add("/".join(parts[:i]))
    return files, folders


def strip_code_spans(line):
    """The line with each `code span` blanked (same length, so columns stay)."""
    out, i = [], 0
    while i < len(line):
        if line[i] == "`":
            run = len(line[i:]) - len(line[i:].lstrip("`"))
            close = line.find("`" * run, i + run)
            if close != -1:
                out.append(" " * (close + run - i))
                i = close + run
                continue
            out.append(line[i:i + run])
            i += run
            continue
        out.append(line[i])
        i += 1
    return "".join(out)


def prose_text(text):
    """The page with fenced code blocks emptied and `code spans` blanked (lines and
    columns kept, so offsets still give line numbers). Code spans are matched within a
    paragraph, as Markdown does, so a span wrapped over two lines is still code."""
    lines, fence = [], None
    for line in text.splitlines():
        match = FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)
            lines.append("")
            continue
        if fence is not None:
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence) \
                    and line.strip() == match.group(1):
                fence = None
            lines.append("")
            continue
        lines.append(line)
    paragraphs = re.split(r"(\n[ \t]*\n)", "\n".join(lines))
    return "".join(strip_code_spans(part) for part in paragraphs)


def prose_lines(text):
    """(line number, line) of prose_text(text)."""
    return enumerate(prose_text(text).split("\n"), 1)


def heading_ids(text):
    """GitHub's ids for the headings of a page: lower case, punctuation dropped,
    spaces to hyphens, -1, -2... for repeats."""
    ids, seen = set(), {}
    for _, line in prose_lines(text.replace("`", "")):
        match = HEADING.match(line)
        if not match:
            continue
        title = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", match.group(2))  # links: their text
        slug = "".join(c for c in title.lower()
                       if c in " -_" or unicodedata.category(c)[0] in "LN")
        slug = slug.replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        ids.add(slug if count == 0 else f"{slug}-{count}")
    return ids


def check_target(source, target, files, folders, root, anchors_cache):
    """None when `target` (a link in `source`) resolves inside the repository, else why not."""
    if target.startswith("<") and target.endswith(">"):
        target = target[1:-1]
    if not target:
        return "empty link"
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("//"):
        return f"link leaves the repository: {target}"
    path, _, fragment = target.partition("#")
    path = path.split("?")[0]
    if path.startswith("/"):
        return f"absolute path (use a relative one): {target}"
    base = os.path.dirname(source)
    resolved = os.path.normpath(os.path.join(base, path)).replace(os.sep, "/") if path else source
    if resolved == ".":
        resolved = ""
    if resolved.startswith("../") or resolved == "..":
        return f"link leaves the repository: {target}"
    if resolved not in files and resolved not in folders:
        return f"no such file in the repository: {target}"
    if fragment:
        if resolved not in files or not resolved.endswith(".md"):
            return f"#{fragment} on something that is not a page: {target}"
        if resolved not in anchors_cache:
            with open(os.path.join(root, resolved), encoding="utf-8") as f:
                anchors_cache[resolved] = heading_ids(f.read())
        if fragment not in anchors_cache[resolved]:
            return f"no heading #{fragment} in {resolved}"
    return None


def check_file(source, root, files, folders, anchors_cache):
    """Problems in one page, as 'file:line: what' strings."""
    with open(os.path.join(root, source), encoding="utf-8") as f:
        text = prose_text(f.read())
    problems = []

    def line_of(offset):
        return text.count("\n", 0, offset) + 1

    found = []  # (offset, target); link text may be wrapped over several lines
    for pattern, group in ((INLINE_LINK, 2), (AUTOLINK, 1), (HTML_ATTRIBUTE, 1)):
        found += [(m.start(), m.group(group)) for m in pattern.finditer(text)]
    offset = 0
    for line in text.split("\n"):
        match = REFERENCE_DEFINITION.match(line)
        if match:
            found.append((offset, match.group(1)))
        offset += len(line) + 1
    for at, target in sorted(found):
        why = check_target(source, target, files, folders, root, anchors_cache)
        if why:
            problems.append(f"{source}:{line_of(at)}: {why}")
    blank = lambda m: " " * len(m.group(0))  # noqa: E731 (keeps offsets)
    without_links = INLINE_LINK.sub(blank, AUTOLINK.sub(blank, text))
    for match in BARE_URL.finditer(without_links):
        if HARMLESS_HOST.match(match.group(1).rstrip(".")):
            continue
        line = text.split("\n")[line_of(match.start()) - 1]
        problems.append(f"{source}:{line_of(match.start())}: a URL to a real host outside code "
                        f"(put values and examples in `code`; links must be relative): "
                        f"{line.strip()[:100]}")
    return problems


def default_pages(files):
    return sorted(name for name in files
                  if name == "README.md" or (name.startswith("docs/") and name.endswith(".md")))


def run(root, pages):
    files, folders = tracked_paths(root)
    anchors_cache = {}
    problems = []
    for page in pages or default_pages(files):
        problems += check_file(page, root, files, folders, anchors_cache)
    return problems


def self_test():
    """The checks must be able to fail: a small repository with one good and one bad page."""
    with tempfile.TemporaryDirectory() as root:
        os.makedirs(os.path.join(root, "docs", "api"))
        pages = {
            "README.md": "# Title\n\nSee [topics](docs/topics.md#the-table) and [api](docs/api/).\n"
                         "An http:// or https:// URL, e.g. https://sense.example.com:4242 or "
                         "http://127.0.0.1:8080/health.\n"
                         "```yaml\nurl: https://sense.example.com:4242\n```\n"
                         "Run `curl http://127.0.0.1:8080/health`.\n",
            "docs/topics.md": "# Topics\n\n## The `<root>/x` table\n\n## The table\n\n"
                              "Back to [README](../README.md#title). A `wrapped\ncode span "
                              "with https://example.org` is text.\n",
            "docs/api/openapi.json": "{}\n",
            "docs/bad.md": "# Bad\n\n[out](https://example.org/page)\n[up](../../etc/passwd)\n"
                           "[gone](missing.md)\n[anchor](topics.md#nothing-here)\n"
                           "<https://example.org>\nsee https://qlik.com too\n"
                           "[ref]: http://example.org\n<a href=\"/abs\">x</a>\n"
                           "[mail](mailto:a@example.org)\n[a wrapped\nlink](../nowhere.md)\n"
                           "bare https://github.com/x and http://notexample.com\n",
        }
        for name, text in pages.items():
            with open(os.path.join(root, name), "w", encoding="utf-8") as f:
                f.write(text)
        subprocess.run(["git", "-C", root, "init", "-q"], check=True)
        subprocess.run(["git", "-C", root, "add", "."], check=True)
        good = run(root, ["README.md", "docs/topics.md"])
        assert good == [], good
        bad = run(root, ["docs/bad.md"])
        expected_lines = {3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14}
        found_lines = {int(p.split(":")[1]) for p in bad}
        assert found_lines == expected_lines, bad
        assert heading_ids("## The `<root>/x` table\n## A\n## A\n") == \
            {"the-rootx-table", "a", "a-1"}
    print("check-docs self-test: good pages pass, each bad link is reported")


def main():
    root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    if sys.argv[1:] == ["--self-test"]:
        self_test()
        return 0
    problems = run(root, sys.argv[1:])
    for problem in problems:
        print(problem)
    if problems:
        print(f"docs links: {len(problems)} problem(s); see the rule in scripts/check-docs.py")
        return 1
    print("docs links: every link resolves inside the repository, no URL to a real host outside code")
    return 0


if __name__ == "__main__":
    sys.exit(main())
