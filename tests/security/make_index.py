"""Regenerate tests/security/README.md from the tests (module and test docstrings, else the
test names): `.venv/bin/python tests/security/make_index.py` from the repository root."""

import ast
import pathlib
import re

here = pathlib.Path("tests/security")
out = [
    "# Security tests: each attack and the test that covers it",
    "",
    "One row per test. Each test reproduces an attack (or guards the behaviour next to one) through",
    "HTTP, on SQLite and PostgreSQL unless it says otherwise, and asserts the exact refusal.",
    "`test_index.py` keeps this list complete (every test in this folder is listed once, and",
    "every listed test exists); `make_index.py` regenerates it.",
    "",
]
for path in sorted(here.glob("test_*.py")):
    if path.name == "test_index.py":
        continue
    tree = ast.parse(path.read_text())
    doc = (ast.get_docstring(tree) or "").strip()
    first = re.split(r"(?<=\.)\s", doc.replace("\n", " "), maxsplit=1)[0] if doc else ""
    out.append(f"## `{path.name}`")
    out.append("")
    if first:
        out.append(first)
        out.append("")
    out.append("| attack | test |")
    out.append("|---|---|")
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith(
            "test_"
        ):
            d = ast.get_docstring(node)
            if d:
                text = d.strip().split("\n\n")[0].replace("\n", " ")
                text = re.split(r"(?<=\.)\s", text, maxsplit=1)[0]
            else:
                text = node.name[len("test_") :].replace("_", " ")
                text = text[0].upper() + text[1:]
            text = text.replace("|", "\\|")
            out.append(f"| {text} | `{path.name}::{node.name}` |")
    out.append("")
pathlib.Path("tests/security/README.md").write_text("\n".join(out))
