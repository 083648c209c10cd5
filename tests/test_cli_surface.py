"""The CLI as users see it does not move by accident: every command's options, option by option (flags, type,
default, help, bounds), equal the stored copy. A deliberate change rewrites it (`python -m tests.cli_surface
--write`) in the same commit, where the diff shows what changed."""

from __future__ import annotations

import json

from .cli_surface import STORED, surface


def test_every_option_of_every_command_is_unchanged() -> None:
    stored, now = json.loads(STORED.read_text()), surface()
    assert sorted(now) == sorted(stored), "commands added or removed"
    for name in stored:
        assert now[name]["help"] == stored[name]["help"], name
        want = {p["name"]: p for p in stored[name]["params"]}
        got = {p["name"]: p for p in now[name]["params"]}
        assert sorted(got) == sorted(want), (name, sorted(set(got) ^ set(want)))
        for opt in want:
            assert got[opt] == want[opt], (name, opt)
        assert [p["name"] for p in now[name]["params"]] == [p["name"] for p in stored[name]["params"]], name
