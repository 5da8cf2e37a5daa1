#!/usr/bin/env python3
"""budgets.py: the size budgets of src/ (README "Architecture"): no file over 1,000 lines of
non-test code, no function over 120 lines. Prints every breach and exits 1 when there is one.

Test code (`#[cfg(test)]` items) is not counted. A function's length runs from its `fn` line to
its closing brace.

Usage: scripts/budgets.py [SRC_DIR]
"""
import os
import re
import sys

SRC = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
MAX_FILE, MAX_FN = 1000, 120


def blank_literals(text):
    """Blanks out comments, string and char literals (keeping newlines), so that braces in them
    do not count."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i)); i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j])); i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and not (i and (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'r(#*)"', text[i:])
            end = '"' + m.group(1)
            j = text.find(end, i + len(m.group(0)))
            j = n if j < 0 else j + len(end)
            out.append(re.sub(r"[^\n]", " ", text[i:j])); i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j])); i = j
        elif c == "'":
            m = re.match(r"'(\\.|\\u\{[0-9a-fA-F]+\}|[^\\'])'", text[i:i + 12])
            if m:
                out.append(" " * len(m.group(0))); i += len(m.group(0))
            else:
                out.append(c); i += 1
        else:
            out.append(c); i += 1
    return "".join(out)


def code_lines(text):
    """The file's lines with literals and #[cfg(test)] items blanked out."""
    lines = blank_literals(text).split("\n")
    out = []
    skip_depth = None
    pending = False
    for line in lines:
        s = line.strip()
        if skip_depth is None and s.startswith("#[cfg(test)]"):
            pending = True
            out.append("")
            continue
        if pending:
            out.append("")
            depth = line.count("{") - line.count("}")
            if "{" in line:
                skip_depth = depth
                pending = False
                if skip_depth <= 0:
                    skip_depth = None
            elif s.endswith(";"):
                pending = False
            continue
        if skip_depth is not None:
            skip_depth += line.count("{") - line.count("}")
            out.append("")
            if skip_depth <= 0:
                skip_depth = None
            continue
        out.append(line)
    return out


FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")
bad = 0
for root, _, names in os.walk(SRC):
    for n in sorted(names):
        if not n.endswith(".rs"):
            continue
        p = os.path.join(root, n)
        lines = code_lines(open(p, encoding="utf-8").read())
        rel = os.path.relpath(p, os.path.join(SRC, ".."))
        # Every non-blank line outside tests counts, doc comments included.
        raw = [l for l in open(p, encoding="utf-8").read().split("\n")]
        nonblank = sum(1 for l, c in zip(raw, lines) if l.strip() and (c.strip() or (c != "" and l.strip().startswith("//"))))
        if nonblank > MAX_FILE:
            bad += 1
            print(f"{rel}: {nonblank} lines of non-test code (budget {MAX_FILE})")
        i = 0
        while i < len(lines):
            m = FN.match(lines[i])
            if m and "{" in "".join(lines[i:i + 15]):
                depth, j, started = 0, i, False
                while j < len(lines):
                    depth += lines[j].count("{") - lines[j].count("}")
                    if "{" in lines[j]:
                        started = True
                    if started and depth <= 0:
                        break
                    if not started and lines[j].rstrip().endswith(";"):
                        break
                    j += 1
                length = j - i + 1
                if started and length > MAX_FN:
                    bad += 1
                    print(f"{rel}:{i + 1}: fn {m.group(6)} is {length} lines (budget {MAX_FN})")
                i = j + 1 if started else i + 1
            else:
                i += 1
print(f"{bad} breach(es) of the size budgets")
sys.exit(1 if bad else 0)
