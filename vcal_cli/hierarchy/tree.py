"""Class hierarchies: read them, match them to a model's classes, and measure distances in them.

Formats (`load_hierarchy`):
- CSV of one path per class: header `class,level1,level2,...`, ancestors from the top level down;
- CSV of `class,parent` edges (any depth; nodes without a parent hang under an implicit root);
- JSON: a nested object whose leaves are class names (lists of names or null-valued keys);
- a built-in name: `cifar100` (the five-level tree used by HAFrame) or `cifar100-coarse` (CIFAR-100's
  own two levels: the 20 superclasses, i.e. the data set's coarse labels, over the 100 classes).

The distance between two classes is the height of their lowest common ancestor above the leaves (the
"making better mistakes" convention): 0 for the same class, 1 for siblings, up to the tree's height.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from vcal_cli.errors import VcalError


class HierarchyError(VcalError):
    """A hierarchy file is malformed or does not fit the classes."""


BUILTIN = {
    "cifar100": "cifar100_hierarchy.csv",
    "cifar100-coarse": "cifar100_hierarchy.csv",
    "fashion-mnist": "fashion_mnist_hierarchy.csv",
}


@dataclass(frozen=True)
class Hierarchy:
    """Root-to-leaf paths (root excluded, leaf last), one per class, in the model's class order."""

    classes: tuple[str, ...]
    paths: tuple[tuple[str, ...], ...]
    source: str = ""

    @property
    def height(self) -> int:
        return max(len(p) for p in self.paths)

    def distances(self) -> torch.Tensor:
        """(K, K) LCA heights; needs leaves at even depth (checked)."""
        depths = {len(p) for p in self.paths}
        if len(depths) != 1:
            raise HierarchyError(
                f"hierarchy '{self.source}' has leaves at depths {sorted(depths)}; this needs "
                "every class at the same depth",
                hint="pad short paths with repeated nodes",
            )
        h = self.height
        k = len(self.paths)
        d = torch.zeros(k, k, dtype=torch.float64)
        for i in range(k):
            for j in range(i + 1, k):
                common = 0
                for a, b in zip(self.paths[i], self.paths[j], strict=True):
                    if a != b:
                        break
                    common += 1
                d[i, j] = d[j, i] = h - common
        return d

    def reorder(self, class_names: list[str]) -> Hierarchy:
        """The same tree with its classes in `class_names` order; names that do not fit are an error."""
        index = {c: i for i, c in enumerate(self.classes)}
        missing = [c for c in class_names if c not in index]
        extra = [c for c in self.classes if c not in set(class_names)]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"{len(missing)} of the model's classes are not in it ({', '.join(missing[:5])})")
            if extra:
                parts.append(f"{len(extra)} of its classes are not the model's ({', '.join(extra[:5])})")
            raise HierarchyError(f"hierarchy '{self.source}' does not fit the classes: {'; '.join(parts)}")
        return Hierarchy(tuple(class_names), tuple(self.paths[index[c]] for c in class_names), self.source)


def _from_paths(rows: list[list[str]], source: str) -> Hierarchy:
    classes, paths = [], []
    for row in rows:
        row = [c.strip() for c in row if c.strip()]
        if row:
            classes.append(row[0])
            paths.append((*row[1:], row[0]))
    return _checked(classes, paths, source)


def _from_edges(rows: list[list[str]], source: str) -> Hierarchy:
    parent: dict[str, str] = {}
    for row in rows:
        child, par = row[0].strip(), row[1].strip()
        if child in parent and parent[child] != par:
            raise HierarchyError(f"hierarchy '{source}': '{child}' has two parents ('{parent[child]}', '{par}')")
        parent[child] = par
    for start in parent:  # every node must reach a root
        node, seen = start, {start}
        while node in parent and parent[node]:
            node = parent[node]
            if node in seen:
                raise HierarchyError(f"hierarchy '{source}' has a cycle through '{node}'")
            seen.add(node)
    leaves = [c for c in parent if c not in set(parent.values())]
    paths = []
    for leaf in leaves:
        path, node = [leaf], leaf
        while node in parent and parent[node]:
            node = parent[node]
            path.append(node)
        paths.append(tuple(reversed(path)))
    return _checked(leaves, paths, source)


def _from_json(obj: object, source: str) -> Hierarchy:
    classes, paths = [], []

    def walk(node: object, prefix: tuple[str, ...]) -> None:
        if len(prefix) > MAX_DEPTH:
            raise HierarchyError(f"hierarchy '{source}' nests deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            for name, child in node.items():
                if child is None or child == {} or child == []:
                    classes.append(name)
                    paths.append((*prefix, name))
                else:
                    walk(child, (*prefix, name))
        elif isinstance(node, list):
            for leaf in node:
                if isinstance(leaf, str):
                    classes.append(leaf)
                    paths.append((*prefix, leaf))
                else:
                    walk(leaf, prefix)
        else:
            raise HierarchyError(f"hierarchy '{source}': unexpected {type(node).__name__} in the tree")

    walk(obj, ())
    return _checked(classes, paths, source)


def _checked(classes: list[str], paths: list[tuple[str, ...]], source: str) -> Hierarchy:
    if len(classes) < 2:
        raise HierarchyError(f"hierarchy '{source}' has {len(classes)} classes; it needs at least 2")
    dup = sorted({c for c in classes if classes.count(c) > 1})
    if dup:
        raise HierarchyError(f"hierarchy '{source}' lists classes more than once ({', '.join(dup[:5])})")
    groups = {g for p in paths for g in p[:-1]}
    both = sorted(set(classes) & groups)
    if both:  # a class above itself or above another class: a cycle in names
        raise HierarchyError(
            f"hierarchy '{source}': '{both[0][:40]}' is both a class and a group above classes (a cycle in names)",
            hint="give groups names no class has",
        )
    for p in paths:
        if len(set(p)) != len(p):
            raise HierarchyError(f"hierarchy '{source}': the path of '{p[-1][:40]}' passes through a name twice")
    return Hierarchy(tuple(classes), tuple(paths), source)


def _uncommented(text: str) -> str:
    """A hierarchy CSV without its `#` comment lines (the built-in files justify their groupings in them)."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


MAX_FILE_BYTES = 64 << 20  # a hierarchy file (a million classes' paths fit)
MAX_DEPTH = 100  # levels of a JSON tree (WordNet's deepest path has about 20)


def load_hierarchy(spec: str | Path) -> Hierarchy:
    """Read a hierarchy from a file (CSV paths, CSV edges, JSON) or a built-in name."""
    spec = str(spec)
    if spec in BUILTIN:
        text = resources.files("vcal_cli.hierarchy").joinpath("data", BUILTIN[spec]).read_text(encoding="utf-8")
        source = f"built-in {spec}"
        if spec == "cifar100-coarse":  # level4 is CIFAR-100's own superclass (coarse label)
            rows = list(csv.reader(io.StringIO(_uncommented(text))))[1:]
            return _from_paths([[r[0], r[4]] for r in rows if r], source)
    else:
        path = Path(spec)
        if not path.is_file():
            raise HierarchyError(
                f"--hierarchy '{spec}' does not exist",
                hint=f"give a .csv or .json file, or one of: {', '.join(BUILTIN)}",
            )
        if path.stat().st_size > MAX_FILE_BYTES:
            raise HierarchyError(f"--hierarchy '{spec}' is {path.stat().st_size:,} bytes (at most {MAX_FILE_BYTES:,})")
        try:
            text, source = path.read_text(encoding="utf-8"), spec
        except UnicodeDecodeError:
            raise HierarchyError(
                f"--hierarchy '{spec}' is not UTF-8 text", hint="give a .csv or .json text file"
            ) from None
        if "\0" in text:
            raise HierarchyError(f"--hierarchy '{spec}' is a binary file", hint="give a .csv or .json text file")
    if spec.endswith(".json"):
        try:
            return _from_json(json.loads(text), source)
        except json.JSONDecodeError as e:
            raise HierarchyError(f"--hierarchy '{spec}' is not valid JSON ({e})") from None
        except RecursionError:
            raise HierarchyError(f"--hierarchy '{spec}' nests deeper than vcal reads ({MAX_DEPTH} levels)") from None
    try:
        rows = [r for r in csv.reader(io.StringIO(_uncommented(text))) if any(c.strip() for c in r)]
    except csv.Error as e:
        raise HierarchyError(f"--hierarchy '{spec}' is not a readable CSV ({e})") from None
    if not rows:
        raise HierarchyError(f"--hierarchy '{spec}' is empty")
    header = [c.strip().lower() for c in rows[0]]
    if header[:2] == ["class", "parent"] and len(header) == 2:
        return _from_edges(rows[1:], source)
    if header[0] == "class":
        return _from_paths(rows[1:], source)
    raise HierarchyError(
        f"--hierarchy '{spec}': the CSV header must be 'class,parent' (edges) or "
        "'class,level1,level2,...' (one path per class)"
    )


def builtin_for(data: str) -> str | None:
    """The built-in hierarchy of a data set, if it has one."""
    return data if data in BUILTIN and data != "cifar100-coarse" else None
