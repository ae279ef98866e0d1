#!/usr/bin/env python3
"""Fail when a module of src/ imports a module of a higher layer.

The layers are the fenced block under the `## Layers` heading of
docs/ARCHITECTURE.md: one layer per line, lowest first, module names
separated by spaces, `#` starting a comment. A module may import modules of
its own line and of the lines above it.

Every `crate::<name>` path in src/ counts as an import, also in `use
crate::{a, b}` groups and in test code (`#[cfg(test)]` modules and tests.rs
files are not exempt). Names re-exported at the crate root (`crate::Error`)
count as their module, macros (`crate::db_run`) as the module defining
them. lib.rs and main.rs are the root, not a layer, and are not scanned.
Every top-level module must be in the list, so a new one has to be placed.

Usage: scripts/check-layers.py [repository root]
"""

import re
import sys
from pathlib import Path

FENCE = re.compile(r"^\s*(```|~~~)")


def read_layers(doc: Path) -> list[list[str]]:
    lines = doc.read_text(encoding="utf-8").splitlines()
    try:
        start = next(i for i, l in enumerate(lines) if l.strip() == "## Layers")
    except StopIteration:
        sys.exit(f"{doc}: no `## Layers` heading")
    layers: list[list[str]] = []
    inside = False
    for line in lines[start + 1:]:
        if FENCE.match(line):
            if inside:
                break
            inside = True
            continue
        if not inside:
            if line.startswith("## "):
                break
            continue
        names = line.split("#", 1)[0].split()
        if names:
            layers.append(names)
    if not layers:
        sys.exit(f"{doc}: no fenced layer list under `## Layers`")
    return layers


def top_level_modules(src: Path) -> set[str]:
    mods = {p.stem for p in src.glob("*.rs") if p.stem not in ("lib", "main")}
    mods |= {p.name for p in src.iterdir() if p.is_dir() and (p / "mod.rs").exists()}
    return mods


def root_names(src: Path, modules: set[str]) -> dict[str, str]:
    """Names usable as `crate::<name>` that are not modules: re-exports in
    lib.rs and `#[macro_export]` macros, each mapped to its module."""
    names: dict[str, str] = {}
    lib = src / "lib.rs"
    for m in re.finditer(r"pub use (\w+)::(\{[^}]*\}|\w+)", lib.read_text(encoding="utf-8")):
        for name in re.findall(r"\w+", m.group(2)):
            names[name] = m.group(1)
    for path in src.rglob("*.rs"):
        rel = path.relative_to(src).parts
        if rel[0].removesuffix(".rs") not in modules:
            continue
        for name in re.findall(r"macro_rules!\s*(\w+)", path.read_text(encoding="utf-8")):
            names[name] = rel[0].removesuffix(".rs")
    return names


def imports(line: str):
    """The first path segment of each `crate::` path on a line."""
    for m in re.finditer(r"(?<![\w$])crate::(\{[^}]*\}?|\w+)", line):
        seg = m.group(1)
        if seg.startswith("{"):
            # `crate::{a, b::c}`: the names right after `{` or `,`.
            yield from re.findall(r"(?:^\{|,)\s*(\w+)", seg)
        else:
            yield seg


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent)
    src = root / "src"
    doc = root / "docs" / "ARCHITECTURE.md"
    layers = read_layers(doc)
    level: dict[str, int] = {}
    for i, names in enumerate(layers):
        for name in names:
            if name in level:
                sys.exit(f"{doc}: `{name}` is in two layers")
            level[name] = i
    modules = top_level_modules(src)
    problems = [f"{doc}: module `{m}` is in no layer" for m in sorted(modules - level.keys())]
    problems += [f"{doc}: `{m}` is no module of src/" for m in sorted(level.keys() - modules)]
    aliases = root_names(src, modules)

    for path in sorted(src.rglob("*.rs")):
        rel = path.relative_to(src)
        module = rel.parts[0].removesuffix(".rs")
        if module not in modules:
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines, 1):
            code = "" if line.lstrip().startswith("//") else line
            # A `use crate::{…}` group may span lines: read on to its `}`.
            if "crate::{" in code and "}" not in code.split("crate::{", 1)[1]:
                for more in lines[n:]:
                    code += " " + more.split("//", 1)[0]
                    if "}" in more:
                        break
            for name in imports(code):
                target = name if name in modules else aliases.get(name)
                if target is None or target == module:
                    continue
                if level[target] > level[module]:
                    problems.append(
                        f"src/{rel}:{n}: `{module}` (layer {level[module] + 1}) imports "
                        f"`{target}` (layer {level[target] + 1}), a higher layer"
                    )
    for p in problems:
        print(p)
    if problems:
        print(f"check-layers: {len(problems)} problem(s); see `## Layers` in docs/ARCHITECTURE.md")
        return 1
    print(f"check-layers: {len(modules)} modules in {len(layers)} layers, no upward import")
    return 0


if __name__ == "__main__":
    sys.exit(main())
