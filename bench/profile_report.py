"""Summarise py-spy ``--format raw`` profiles (collapsed stacks) written by
``bench/run.py --profile SCENARIO``.

    .venv/bin/python bench/profile_report.py bench/profiles/call_get-*.txt [--top 25]

Prints, over all the files given: the functions with the most samples *including* their
callees (where the time goes, top-down), and the ones with the most samples on top of the
stack (what actually burns the CPU). Paths are shortened to the package.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def short(frame: str) -> str:
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    for marker in ("site-packages/", "/lib/python3.11/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{m.group('func')} ({path})"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--grep", help="only stacks through a frame matching this text")
    a = p.parse_args()
    inclusive: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    total = 0
    for path in a.files:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            if a.grep and a.grep not in stack:
                continue
            n = int(count)
            frames = [short(f) for f in stack.split(";")]
            total += n
            for f in set(frames):
                inclusive[f] += n
            self_time[frames[-1]] += n
    print(f"{total} samples")
    print("\ninclusive (with callees):")
    for f, n in inclusive.most_common(a.top):
        print(f"  {100 * n / total:5.1f}%  {f}")
    print("\nself (top of stack):")
    for f, n in self_time.most_common(a.top):
        print(f"  {100 * n / total:5.1f}%  {f}")


if __name__ == "__main__":
    main()
