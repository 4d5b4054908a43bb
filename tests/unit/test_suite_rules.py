"""Rules the test suite keeps, checked over its own source.

One rule for skips: a test that needs a tool or service calls `tests.conftest.unavailable()`,
which skips locally and fails under CI=true, so a CI machine missing a tool cannot pass by
skipping. `pytest.skip` is left for tests that do not apply to the database in use (marked
`# not-applicable` on the line); `skipif` and `importorskip` are not used at all.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _sources() -> list[tuple[Path, int, str]]:
    lines = []
    for path in sorted(TESTS.rglob("*.py")):
        if path == Path(__file__).resolve() or path.name == "conftest.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            lines.append((path.relative_to(TESTS), n, line))
    return lines


def test_skips_go_through_unavailable() -> None:
    bad = [
        f"{path}:{n}: {line.strip()}"
        for path, n, line in _sources()
        if re.search(r"\bimportorskip\b|\bskipif\b|\.mark\.skip\b", line)
        or ("pytest.skip(" in line and "# not-applicable" not in line)
    ]
    assert bad == []


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def test_no_fixed_sleep_before_an_assert() -> None:
    """Sleep-then-assert is a race: poll the condition with a deadline instead. A sleep of
    0.1 s or more whose next statement is an assert at the same level is flagged. Not
    flagged: the last line of a polling loop, and a sleep marked `# time passes` whose
    point is to let protocol timers run (the assert then says nothing broke meanwhile)."""
    bad = []
    src = _sources()
    for (path, n, line), (path2, _, following) in itertools.pairwise(src):
        if path == path2 and re.search(r"\bsleep\((0\.[1-9]|[1-9])", line) \
                and "# time passes" not in line \
                and following.strip().startswith("assert ") \
                and _indent(following) >= _indent(line):
            bad.append(f"{path}:{n}: {line.strip()} / {following.strip()}")
    assert bad == []
