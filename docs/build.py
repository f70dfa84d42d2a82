"""Build the minigan book: the chapters executed with their figures, and the API reference.

    pip install -e ".[docs]"
    python docs/build.py               # quick mode: the chapters run with MINIGAN_QUICK=1
    python docs/build.py --full        # full mode: the chapters train as a reader's would
    python docs/build.py --fresh       # ignore the execution cache of the mode

The HTML goes to ``docs/_build/html`` (``--out`` to change it). Each mode keeps its
own execution cache (``docs/_build/jupyter_cache_<mode>``), so a rebuild executes
only the chapters whose code changed; a full rebuild does not retrain.

The build fails (exit status 1) on a cell error and on every Sphinx warning (a
broken internal link, a missing image, a page outside the table of contents), except
the warnings about a docstring's own markup: those are listed at the end, as the
library's to fix, and the page still renders (``--strict`` fails on them too).
Chapters that read MNIST find it through ``$MINIGAN_DATA_DIR`` (else they download
it into ``~/.cache/minigan`` the first time).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true",
                        help="run the chapters in full mode (default: quick mode)")
    parser.add_argument("--out", type=Path, default=DOCS / "_build" / "html",
                        help="output folder (default: docs/_build/html)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="execution cache folder (default: docs/_build/jupyter_cache_<mode>)")
    parser.add_argument("--fresh", action="store_true",
                        help="delete the execution cache and Sphinx's saved state first")
    parser.add_argument("-j", "--jobs", default="1",
                        help="Sphinx processes reading pages in parallel (chapters execute "
                             "in them), or 'auto' (default: 1)")
    parser.add_argument("--strict", action="store_true",
                        help="fail on docstring markup warnings too")
    args = parser.parse_args(argv)

    mode = "full" if args.full else "quick"
    cache = args.cache or DOCS / "_build" / f"jupyter_cache_{mode}"
    doctrees = args.out.parent / f"doctrees_{mode}"
    if args.fresh:
        for path in (cache, doctrees):
            shutil.rmtree(path, ignore_errors=True)
    env = dict(os.environ, MINIGAN_BOOK_MODE=mode, MINIGAN_BOOK_CACHE=str(cache))
    args.out.mkdir(parents=True, exist_ok=True)
    warnings_file = args.out.parent / f"warnings_{mode}.txt"
    command = [sys.executable, "-m", "sphinx", "-b", "html", "--keep-going", "--no-color",
               "-w", str(warnings_file), "-j", str(args.jobs), "-d", str(doctrees),
               str(DOCS), str(args.out)]
    print(f"building the book in {mode} mode: {' '.join(command)}", flush=True)
    start = time.monotonic()
    rc = subprocess.call(command, env=env)
    took = time.monotonic() - start
    docstring, other = split_warnings(warnings_file.read_text(encoding="utf-8")
                                      if warnings_file.is_file() else "")
    if docstring:
        print(f"\n{len(docstring)} warning(s) about the markup of a docstring (the "
              "library's to fix; the pages still render):")
        print("\n".join("  " + w for w in docstring))
    if other:
        print(f"\n{len(other)} warning(s) that fail the book:", file=sys.stderr)
        print("\n".join("  " + w for w in other), file=sys.stderr)
    failed = rc != 0 or bool(other) or (args.strict and bool(docstring))
    if failed:
        print(f"the build failed after {took:.0f} s (sphinx exit status {rc})", file=sys.stderr)
        return 1
    print(f"built in {took:.0f} s: {args.out / 'index.html'}")
    return 0


def split_warnings(text: str):
    """Sphinx's warning lines -> (about a docstring of minigan, all the others)."""
    start = re.compile(r"^(\S.*?: )?(WARNING|ERROR|CRITICAL|SEVERE)\b", re.M)
    heads = [m.start() for m in start.finditer(text)]
    entries = [text[a:b].strip() for a, b in zip(heads, heads[1:] + [len(text)])]
    if text.strip() and not heads:
        entries = [text.strip()]
    docstring = [e for e in entries if re.search(r"docstring of minigan\b", e)]
    return docstring, [e for e in entries if e not in docstring]


if __name__ == "__main__":
    sys.exit(main())
