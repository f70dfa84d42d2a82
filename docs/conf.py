"""Sphinx configuration of the minigan book (build it with ``python docs/build.py``).

The book is made of pages written here (install, the API reference), pages taken
from the repository as they are (the README as the home page, the teachers' guide,
the benchmark results, the changelog) and the tutorial chapters, executed
by myst-nb with their outputs and figures.

Before Sphinx reads anything, ``_prepare()`` copies what lives outside ``docs/``
into two ignored folders, ``docs/chapters/`` and ``docs/_generated/``, rewriting
the repository-relative links of the Markdown files (``tutorials/README.md``,
``benchmarks/RESULTS.md``, ...) into links between pages of the book.

Modes (``MINIGAN_BOOK_MODE``, set by ``build.py``):

* ``quick`` (default): the chapters run with ``MINIGAN_QUICK=1``, in a few minutes;
* ``full``: the chapters train as a reader's laptop would (chapter 9 takes about
  fifteen minutes). Both keep an execution cache (jupyter-cache, one per mode,
  ``MINIGAN_BOOK_CACHE``), so a rebuild executes only the chapters whose code changed.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # autodoc imports this checkout's minigan, installed or not

import minigan  # noqa: E402

MODE = os.environ.get("MINIGAN_BOOK_MODE", "quick").strip().lower()
if MODE not in ("quick", "full"):
    raise ValueError(f"MINIGAN_BOOK_MODE={MODE!r}: expected 'quick' or 'full'")

# -- the environment the chapters execute in (the kernel inherits it) --------
os.environ["MINIGAN_QUICK"] = "1" if MODE == "quick" else "0"
os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
if os.environ.get("MINIGAN_DATA_DIR"):  # the kernel runs in a temporary folder
    os.environ["MINIGAN_DATA_DIR"] = str(Path(os.environ["MINIGAN_DATA_DIR"]).expanduser().resolve())
# The chapters multiply small matrices: one BLAS thread is faster than several that
# spin against each other (5x on a busy 2-core machine). Set the variables to override.
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

# -- what the book takes from the rest of the repository ---------------------
# Repository paths -> book pages, for the links of the Markdown files copied below.
PAGES = {
    "README.md": "index",
    "tutorials/README.md": "chapters/index",
    "docs/teachers.md": "teachers",
    "benchmarks/RESULTS.md": "benchmarks",
    "benchmarks/README.md": "benchmarks-method",
    "CHANGELOG.md": "changelog",
}
CHAPTERS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.ipynb"))
for nb in CHAPTERS:
    PAGES[f"tutorials/{nb.name}"] = f"chapters/{nb.stem}"

_LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)(\))")


def _rewrite_links(text: str, source: str, page: str) -> str:
    """Repository-relative links of ``source`` -> links relative to book page ``page``."""
    here = Path(source).parent
    depth = page.count("/")

    def fix(match):
        target = match.group(2)
        if re.match(r"^[a-z]+:|^#|^/", target):
            return match.group(0)
        path, _, anchor = target.partition("#")
        repo_path = os.path.normpath(here / path).replace(os.sep, "/")
        if repo_path in PAGES:
            new = "../" * depth + PAGES[repo_path] + ".md"
            if PAGES[repo_path].startswith("chapters/") and repo_path.endswith(".ipynb"):
                new = new[:-3] + ".ipynb"
        elif repo_path.startswith("docs/"):
            new = "../" * depth + repo_path[len("docs/"):]
        else:  # left as it is: the build reports it if it is broken
            return match.group(0)
        return match.group(1) + new + (f"#{anchor}" if anchor else "") + match.group(3)

    return _LINK.sub(fix, text)


def _copy_markdown(source: str, dest: Path, page: str, header: str = "",
                   footer: str = "") -> None:
    text = (ROOT / source).read_text(encoding="utf-8")
    dest.parent.mkdir(parents=True, exist_ok=True)
    new = header + _rewrite_links(text, source, page) + footer
    if not dest.is_file() or dest.read_text(encoding="utf-8") != new:
        dest.write_text(new, encoding="utf-8")


def _copy_if_changed(src: Path, dest: Path) -> None:
    if not dest.is_file() or dest.read_bytes() != src.read_bytes():
        shutil.copyfile(src, dest)


def _prepare() -> None:
    gen, chapters = DOCS / "_generated", DOCS / "chapters"
    gen.mkdir(exist_ok=True)
    chapters.mkdir(exist_ok=True)
    _copy_markdown("README.md", gen / "home.md", "index")
    _copy_markdown("tutorials/README.md", chapters / "index.md", "chapters/index",
                   header="(chapters)=\n",
                   footer="\n```{toctree}\n:hidden:\n:maxdepth: 1\n\n"
                          + "".join(f"{nb.stem}\n" for nb in CHAPTERS) + "```\n")
    _copy_markdown("benchmarks/RESULTS.md", gen / "benchmarks_results.md", "benchmarks")
    _copy_markdown("benchmarks/README.md", gen / "benchmarks_method.md", "benchmarks-method")
    _copy_markdown("CHANGELOG.md", gen / "changelog.md", "changelog")
    wanted = {nb.name for nb in CHAPTERS} | {"index.md"}
    for stale in chapters.iterdir():
        if stale.name not in wanted:
            stale.unlink()
    for nb in CHAPTERS:
        _copy_if_changed(nb, chapters / nb.name)


_prepare()

# -- Sphinx ------------------------------------------------------------------
project = "minigan"
author = "the minigan authors"
copyright = "the minigan authors, MIT licence"
release = minigan.__version__
version = release

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx.ext.mathjax",
    "sphinx_copybutton",
]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "_generated", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints",
                    "build.py", "conf.py"]
root_doc = "index"
suppress_warnings = []

# MyST: $...$ and $$...$$ maths as in the notebooks, ::: fences, heading anchors for links.
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# myst-nb: execute the chapters (cached), fail the build on any cell error.
nb_execution_mode = "cache"
nb_execution_cache_path = os.environ.get(
    "MINIGAN_BOOK_CACHE", str(DOCS / "_build" / f"jupyter_cache_{MODE}"))
nb_execution_timeout = 600 if MODE == "quick" else 3600
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_execution_in_temp = True  # chapters that write files (GIFs, checkpoints) write them there
nb_execution_excludepatterns = []
nb_merge_streams = True
nb_ipywidgets_js = {}  # no widgets, and no script from a CDN
nb_kernel_rgx_aliases = {".*": "python3"}

# autodoc: the API reference from the docstrings, in source order.
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}
autodoc_typehints = "description"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = True

html_theme = "pydata_sphinx_theme"
html_title = f"minigan {release}"
html_static_path = []


def _local_mathjax():
    """MathJax 3 as shipped by the sphinx-mathjax-offline distribution (its folder is not
    an importable module, so the files are used directly): the book then renders its
    maths with no request to a CDN, offline and in the browser test."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        static = Path(distribution("sphinx-mathjax-offline").locate_file(
            "sphinx-mathjax-offline/static"))
    except PackageNotFoundError:
        return None
    return static if (static / "mathjax" / "tex-chtml.js").is_file() else None


if _local_mathjax() is not None:
    html_static_path.append(str(_local_mathjax()))
    mathjax_path = "mathjax/tex-chtml.js"
else:
    print("minigan book: sphinx-mathjax-offline is not installed; the maths will load "
          "MathJax from its CDN (pip install -e '.[docs]' for an offline book)")
html_show_sourcelink = False
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "navbar_align": "left",
    "header_links_before_dropdown": 6,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_context = {"default_mode": "light"}  # the theme logs a console error when none is set
html_sidebars = {"index": [], "install": [], "changelog": [], "teachers": []}


# -- docstrings: minigan writes them as plain text --------------------------------
# Indented lines are code (``x = ring8().sample(...)`` after a sentence ending in a
# colon, with deeper indentation inside), and ``|x|`` is an absolute value. reST would
# read the first as block quotes and definition lists and the second as substitutions;
# this hook makes both literal before autodoc renders them. Other markup problems of a
# docstring (a malformed table, say) still reach the build's warnings, which
# ``build.py`` lists as the docstring's, without failing the book.
_LIST_ITEM = re.compile(r"^(\s*)([-*+]|\d+[.)]|#[.)]|:[^:]+:|\.\. |>>>)(\s|$)")
_LITERAL_SPAN = re.compile(r"``.*?``")
_TABLE_BORDER = re.compile(r"^\s*=+(\s+=+)+\s*$")


def _indent(line):
    return len(line) - len(line.lstrip())


def _escape_bars(line):
    parts, last = [], 0
    for m in _LITERAL_SPAN.finditer(line):
        parts.append(line[last:m.start()].replace("|", "\\|"))
        parts.append(m.group(0))
        last = m.end()
    parts.append(line[last:].replace("|", "\\|"))
    return "".join(parts)


def plain_text_docstring(app, what, name, obj, options, lines):
    out = []
    literal_indent = None  # the text's indentation while inside a literal block
    table_borders = 0      # inside a simple table (=====  ====) until its third border
    for line in lines:
        if _TABLE_BORDER.match(line) and literal_indent is None:
            table_borders = (table_borders + 1) % 3
            out.append(line)
            continue
        if table_borders:
            out.append(line)
            continue
        if not line.strip():
            out.append(line)
            continue
        ind = _indent(line)
        if literal_indent is not None:
            if ind > literal_indent:
                out.append(line)
                continue
            literal_indent = None
            if out[-1].strip():  # the text goes on: a blank line ends the block
                out.append("")
        prev_k = max((j for j, x in enumerate(out) if x.strip()), default=None)
        prev = out[prev_k] if prev_k is not None else None
        prev_is_blank = bool(out) and not out[-1].strip()
        if (prev is not None and ind > _indent(prev) and not _LIST_ITEM.match(prev)
                and not prev.rstrip().endswith("::")
                and (prev_is_blank or _indent(prev) == 0)):
            # An indented block after a paragraph: make it a literal block.
            if prev.rstrip().endswith(":"):
                out[prev_k] = prev.rstrip() + ":"
                if not prev_is_blank:
                    out.append("")
            elif not prev_is_blank:
                out[prev_k] = prev.rstrip() + " ::"
                out.append("")
            else:
                out.extend([" " * _indent(prev) + "::", ""])
            literal_indent = _indent(prev)
            out.append(line)
            continue
        out.append(line if line.lstrip().startswith("..") else _escape_bars(line))
    lines[:] = out


def setup(app):
    # After napoleon (priority 500), so that its Args:/Returns: sections are reST already.
    app.connect("autodoc-process-docstring", plain_text_docstring, priority=600)
