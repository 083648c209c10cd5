"""Class hierarchies: read them, match them to a model's classes, measure distances in them
(`vcal_cli.hierarchy.tree`; the built-in trees are in `data/`)."""

from vcal_cli.hierarchy.tree import BUILTIN, Hierarchy, HierarchyError, builtin_for, load_hierarchy

__all__ = ["BUILTIN", "Hierarchy", "HierarchyError", "builtin_for", "load_hierarchy"]
