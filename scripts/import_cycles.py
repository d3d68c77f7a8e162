#!/usr/bin/env python3
"""List the import edges between the Rust crate's modules, and any circle among them.

    python3 scripts/import_cycles.py [--edges] [--allow-nested] [SRC]

A module is a file under SRC (default: src; `a/mod.rs` is `a`); a `#[cfg(test)] mod
tests` block is a module of its own, so test code may use what uses its parent. An edge
A -> B is any `use` or path in A's code (comments and literals skipped) that names B or
an item of B: `crate::`, `super::` and `self::` paths, and a parent file's paths into
its own children (`mod x;` then `x::f()`). A path through a `pub use` re-export leads to
where the re-export points.

Prints each circle (modules that reach each other through their edges) with the edges
that close it, and exits 1 if there is any. A circle that only closes through a child's
use of its own parent (a type whose stages are split into child files that
`use super::...`) is marked "nested"; --allow-nested does not count those. With
--edges, also every edge.
"""

import re
import sys
from pathlib import Path

RAW = re.compile(r'b?r(#*)"')
CHAR = re.compile(r"'(?:\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]+\}|.)|[^\\'\n])'")


def strip(text):
    """The code without comments, string and char literals (kept as blanks)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif m := RAW.match(text, i):
            if i and (text[i - 1].isalnum() or text[i - 1] == "_"):
                out.append(c)
                i += 1
                continue
            end = '"' + m.group(1)
            j = text.find(end, m.end())
            out.append('""')
            i = n if j < 0 else j + len(end)
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""')
            i = j + 1
        elif c == "'" and (m := CHAR.match(text, i)):
            out.append("' '")
            i = m.end()
        else:
            out.append(c)
            i += 1
    return "".join(out)


def expand(tree):
    """`a::{b, c::{d as e}}` -> [("a::b", "b"), ("a::c::d", "e")]: paths and the names
    they are bound to."""
    tree = " ".join(tree.split())
    if "{" not in tree:
        path, _, alias = tree.partition(" as ")
        path = path.replace(" ", "")
        return [(path, alias.strip() or path.rsplit("::", 1)[-1])]
    head, rest = tree.split("{", 1)
    head = head.replace(" ", "")
    parts, depth, cur = [], 0, ""
    for ch in rest[: rest.rfind("}")]:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    parts.append(cur)
    out = []
    for p in filter(None, map(str.strip, parts)):
        if p == "self":
            out.append((head.rstrip(":"), head.rstrip(":").rsplit("::", 1)[-1]))
        else:
            out += [(head + q, name) for q, name in expand(p)]
    return out


def module_of(src, path):
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib"):
        parts.pop()
    return "::".join(["crate", *parts])


def load(src):
    """{module: code} with each test block split off as a module of its own."""
    mods = {}
    for path in sorted(src.rglob("*.rs")):
        name = module_of(src, path)
        code = strip(path.read_text())
        m = re.search(
            r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*\{", code
        )
        if m:
            mods[f"{name}::{m.group(1)}"] = code[m.end() :]
            code = code[: m.start()]
        mods[name] = code
    return mods


def absolute(path, mod, children):
    """`path` as named in `mod`, from the crate root; None if it is not the crate's."""
    segs = path.split("::")
    if segs[0] == "super":
        return mod.split("::")[:-1] + segs[1:]
    if segs[0] == "self":
        return mod.split("::") + segs[1:]
    if segs[0] in children:
        return mod.split("::") + segs
    return segs if segs[0] == "crate" else None


def edges(mods):
    children = {m: set(re.findall(r"\bmod\s+(\w+)\s*;", c)) for m, c in mods.items()}
    # What each module re-exports: name -> the path it stands for.
    exports = {m: {} for m in mods}
    for mod, code in mods.items():
        for tree in re.findall(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);", code):
            for path, name in expand(tree):
                segs = absolute(path, mod, children[mod])
                if segs and name != "*":
                    exports[mod][name] = segs

    def resolve(segs):
        for _ in range(10):
            cut = len(segs)
            while cut and "::".join(segs[:cut]) not in mods:
                cut -= 1
            target = "::".join(segs[:cut])
            nxt = segs[cut] if cut < len(segs) else None
            if nxt in exports.get(target, {}):
                segs = exports[target][nxt] + segs[cut + 1 :]
                continue
            return target
        return target

    found = {}
    for mod, code in mods.items():
        paths = [
            p for tree in re.findall(r"\buse\s+([^;]+);", code) for p, _ in expand(tree)
        ]
        paths += re.findall(r"\b(?:crate|super|self)(?:::\w+)+", code)
        paths += [
            m.group(0)
            for m in re.finditer(r"(?<![:\w])(\w+)(?:::\w+)+", code)
            if m.group(1) in children[mod]
        ]
        targets = set()
        for p in paths:
            segs = absolute(p, mod, children[mod])
            target = segs and resolve(segs)
            if target and target not in (mod, "crate"):
                targets.add(target)
        found[mod] = targets
    return found


def circles(graph):
    """Tarjan's strongly connected components with more than one module."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def upward(a, b):
    """Whether module `a` is inside module `b`."""
    return a.startswith(b + "::")


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    src = Path(args[0]) if args else Path(__file__).resolve().parent.parent / "src"
    graph = edges(load(src))

    def short(m):
        return m.removeprefix("crate::") or "crate"

    if "--edges" in sys.argv:
        for a in sorted(graph):
            for b in sorted(graph[a]):
                print(f"{short(a)} -> {short(b)}")
    groups = circles(graph)
    down = {a: {b for b in bs if not upward(a, b)} for a, bs in graph.items()}
    real = [set(g) for g in circles(down)]
    failing = 0
    for g in groups:
        kind = "" if any(r <= set(g) for r in real) else " (nested)"
        failing += not (kind and "--allow-nested" in sys.argv)
        print(f"circle{kind}:", ", ".join(map(short, g)))
        for a in g:
            for b in sorted(graph[a] & set(g)):
                print(f"    {short(a)} -> {short(b)}")
    n = sum(map(len, graph.values()))
    print(f"{len(graph)} modules, {n} edges, {len(groups)} circles")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
