"""The README's configuration tables name every environment variable the code reads, and
nothing else: a setting nobody can find is a setting nobody can use."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON_SOURCES = [
    *sorted((ROOT / "auth_server").rglob("*.py")),
    *sorted((ROOT / "call_api").rglob("*.py")),
    *sorted((ROOT / "shared").rglob("*.py")),
    ROOT / "manage.py",
    ROOT / "deploy" / "gunicorn.conf.py",
]
NAME = r"([A-Z][A-Z0-9_]+)"
# Every way the code reads a variable by its literal name.
PYTHON_READS = [
    rf"env_(?:str|int|bool|list|float)\(\s*[\"']{NAME}[\"']",
    rf"os\.environ\.get\(\s*[\"']{NAME}[\"']",
    rf"os\.environ\[\s*[\"']{NAME}[\"']\s*\]",
    rf"os\.getenv\(\s*[\"']{NAME}[\"']",
    rf"[\"']{NAME}[\"']\s+(?:not\s+)?in\s+os\.environ",
]
# Reads whose name is not a literal would escape the scan above: only the helpers in
# shared/config.py (which receive the literal from their callers) may do that.
# (``request.environ`` is the WSGI environ of a request, not the process environment.)
DYNAMIC_READ = re.compile(r"os\.(environ\.get|getenv|environ\[)\(?\s*[a-z_]")


def variables_read() -> set[str]:
    names: set[str] = set()
    for path in PYTHON_SOURCES:
        text = path.read_text()
        for pattern in PYTHON_READS:
            names.update(re.findall(pattern, text))
    names.update(re.findall(r"\$\{" + NAME + r"[:}-]", (ROOT / "deploy/entrypoint.sh").read_text()))
    return names


def variables_documented() -> set[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            names.update(re.findall(r"`" + NAME + "`", first_cell))
    return names


def test_no_variable_is_read_under_a_computed_name() -> None:
    offenders = []
    for path in PYTHON_SOURCES:
        if path == ROOT / "shared" / "config.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if DYNAMIC_READ.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_readme_documents_every_variable_the_code_reads() -> None:
    read = variables_read()
    assert {"AUTH_DATABASE_URL", "CALL_TOKEN_LEEWAY", "WEB_CONCURRENCY"} <= read  # scan works
    assert sorted(read - variables_documented()) == []


def test_readme_documents_no_variable_the_code_does_not_read() -> None:
    assert sorted(variables_documented() - variables_read()) == []
