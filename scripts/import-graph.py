#!/usr/bin/env python3
"""import-graph.py: the module import graph of src/, from `use crate::` and `crate::` paths.

Prints every cycle it finds, between top-level modules (src/<m>) and between the files of one
folder (siblings: src/<m>/<a>.rs and src/<m>/<b>.rs, or submodules of a folder), and exits 1 when
there is one, 0 when there is none. Test code (`#[cfg(test)] mod tests { ... }` at the bottom of a
file) is not counted: tests may use anything.

Usage: scripts/import-graph.py [--dot] [SRC_DIR]
"""
import os
import re
import sys

args = [a for a in sys.argv[1:] if not a.startswith("--")]
DOT = "--dot" in sys.argv
SRC = args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
SRC = os.path.normpath(SRC)


def module_of(path):
    """src/a/b/c.rs -> ['a','b','c']; src/a/mod.rs -> ['a']; src/lib.rs -> []."""
    rel = os.path.relpath(path, SRC)[:-3].split(os.sep)
    if rel[-1] == "mod" or rel == ["lib"] or rel == ["main"]:
        rel = rel[:-1]
    return rel


def strip_tests(text):
    """Drops `#[cfg(test)]` items (a test module or a test-only function) and comments."""
    text = re.sub(r"//[^\n]*", "", text)
    out = []
    i = 0
    for m in re.finditer(r"#\[cfg\(test\)\]", text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        # skip the next item: up to its matching closing brace, or a `;`
        j = m.end()
        depth = 0
        while j < len(text):
            c = text[j]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    j += 1
                    break
            elif c == ";" and depth == 0:
                j += 1
                break
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def expand_use(body):
    """Expands `a::{b, c::{d, e}}` into ['a::b', 'a::c::d', 'a::c::e']."""
    body = re.sub(r"\s+", "", body)

    def split_top(s):
        parts, depth, cur = [], 0, ""
        for c in s:
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
            if c == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += c
        if cur:
            parts.append(cur)
        return parts

    def rec(s):
        k = s.find("{")
        if k < 0:
            return [s]
        prefix, inner = s[:k], s[k + 1:s.rfind("}")]
        res = []
        for p in split_top(inner):
            for r in rec(p):
                res.append(prefix + r)
        return res

    return rec(body)


files = {}
for root, _, names in os.walk(SRC):
    for n in names:
        if n.endswith(".rs"):
            p = os.path.join(root, n)
            files[tuple(module_of(p))] = p
mods = set(files)


def resolve(path_segs):
    """The longest known module that is a prefix of a crate path."""
    for k in range(len(path_segs), 0, -1):
        if tuple(path_segs[:k]) in mods:
            return tuple(path_segs[:k])
    return None


edges = set()
for mod, p in files.items():
    text = strip_tests(open(p, encoding="utf-8").read())
    targets = []
    for m in re.finditer(r"\buse\s+crate::([^;]+);", text):
        targets += expand_use(m.group(1))
    for m in re.finditer(r"(?<![\w:])crate::((?:\w+::)*\w+)", text):
        targets.append(m.group(1))
    for m in re.finditer(r"\buse\s+(super(?:::super)*)::([^;]+);", text):
        ups = m.group(1).count("super")
        base = list(mod[:-ups]) if ups <= len(mod) else []
        if p.endswith("mod.rs"):
            base = list(mod[:len(mod) - ups + 1]) if ups else list(mod)
            base = list(mod)[: len(mod) - (ups - 1)] if ups > 1 else list(mod)[:-1]
        for t in expand_use(m.group(2)):
            targets.append("::".join(base + [t]))
    for t in targets:
        segs = [s for s in t.split("::") if s and s != "self" and s != "*"]
        dst = resolve(segs)
        if dst is not None and dst != mod:
            edges.add((mod, dst))


def level_edges(edges):
    """Edges between siblings: for a -> b, cut both at their first differing segment."""
    out = {}
    for a, b in edges:
        n = 0
        while n < len(a) and n < len(b) and a[n] == b[n]:
            n += 1
        if n == len(a) or n == len(b):
            continue  # a parent using its child, or a child using its parent: not a circle
        parent = a[:n]
        out.setdefault(parent, set()).add((a[n], b[n], a, b))
    return out


def cycles(nodes_edges):
    graph = {}
    for x, y, *_ in nodes_edges:
        graph.setdefault(x, set()).add(y)
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            strong(v)
    return comps


sys.setrecursionlimit(10000)
bad = 0
levels = level_edges(edges)
if DOT:
    print("digraph imports {")
    for a, b in sorted(edges):
        print(f'  "{"::".join(a) or "crate"}" -> "{"::".join(b) or "crate"}";')
    print("}")
    sys.exit(0)
for parent in sorted(levels):
    for comp in cycles(levels[parent]):
        bad += 1
        where = "src/" + "/".join(parent) if parent else "src"
        print(f"circle in {where}: {' <-> '.join(comp)}")
        for x, y, a, b in sorted(levels[parent]):
            if x in comp and y in comp:
                print(f"    {'::'.join(a)} uses {'::'.join(b)}")
print(f"{len(edges)} imports between {len(mods)} modules; {bad} circle(s)")
sys.exit(1 if bad else 0)
