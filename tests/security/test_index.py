"""``tests/security/README.md`` lists each attack with the test that covers it: every test
in this folder is listed once, and every listed test exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

HERE = Path(__file__).parent


def security_tests() -> set[str]:
    names = set()
    for path in sorted(HERE.glob("test_*.py")):
        if path.name == Path(__file__).name:
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
                "test_"
            ):
                names.add(f"{path.name}::{node.name}")
    return names


def listed_tests() -> list[str]:
    text = (HERE / "README.md").read_text()
    return re.findall(r"`(test_\w+\.py::test_\w+)`", text)


def test_every_security_test_is_listed_once() -> None:
    listed = listed_tests()
    assert sorted(n for n in set(listed) if listed.count(n) > 1) == []
    assert sorted(security_tests() - set(listed)) == []


def test_every_listed_test_exists() -> None:
    assert sorted(set(listed_tests()) - security_tests()) == []
