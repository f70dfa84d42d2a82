"""The book (docs/) builds in quick mode and reads right in a real browser.

One build per session (``python docs/build.py`` in quick mode, into a temporary
folder, with a fresh execution cache), then:

* the build itself fails on a cell error and on every Sphinx warning other than a
  docstring's own markup (see docs/build.py);
* every internal link, anchor and image of every page resolves to a file (or an
  ``id``) of the built book, checked here from the HTML, independently of Sphinx;
* every chapter is there with its executed outputs and at least one figure;
* the home page, a chapter and an API page are opened in headless Chromium
  (Debian's ``chromium`` through Playwright, served from 127.0.0.1; any request
  to another host is blocked and fails the test): every image has loaded, the
  maths has been typeset by MathJax without errors, and the console has no error.
  Screenshots are written to ``$MINIGAN_BOOK_SCREENSHOTS`` (default: the test's
  temporary folder) for a person to look at.

Skipped, with the reason, without the docs tools (``pip install -e ".[docs]"``),
without MNIST (chapters 4, 9, 11 and 12 read it), or, for the browser test only,
without Playwright or a Chromium binary.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CHAPTERS = sorted(p.stem for p in (ROOT / "tutorials").glob("[0-9][0-9]_*.ipynb"))
BUILD_TIMEOUT_S = 1200  # quick mode takes a few minutes on a busy 2-core machine

pytestmark = [pytest.mark.slow]


def _missing_docs_tools():
    missing = []
    for module in ("sphinx", "myst_nb", "pydata_sphinx_theme", "jupytext"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    return missing


def _mnist_missing_reason():
    from minigan.data.mnist import FILES

    data_dir = os.environ.get("MINIGAN_DATA_DIR")
    from conftest import MNIST_HOWTO as how
    if not data_dir:
        return f"the book runs chapters 4, 9, 11 and 12, which need MNIST: {how}"
    folder = Path(data_dir).expanduser().resolve() / "mnist"
    missing = [name for name in FILES["mnist"] if not (folder / name).is_file()]
    if missing:
        return f"the book needs MNIST, and {folder} lacks {', '.join(missing)}: {how}"
    return None


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    """(path of the built HTML, the build's output) of one quick build."""
    missing = _missing_docs_tools()
    if missing:
        pytest.skip(f"the book needs {', '.join(missing)}: pip install -e '.[docs]'")
    reason = _mnist_missing_reason()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("book")
    env = dict(os.environ)
    env["MINIGAN_CACHE_DIR"] = str(tmp / "minigan-cache")  # never the user's classifier
    env["MINIGAN_DATA_DIR"] = str(Path(env["MINIGAN_DATA_DIR"]).expanduser().resolve())
    env.pop("MPLBACKEND", None)
    command = [sys.executable, str(DOCS / "build.py"), "--out", str(tmp / "html"),
               "--cache", str(tmp / "jupyter-cache")]
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"the quick build ran past {BUILD_TIMEOUT_S} s:\n"
                    f"{(err.stdout or b'')[-3000:]!s}", pytrace=False)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        pytest.fail(f"`{' '.join(command)}` failed (exit status {done.returncode}):\n"
                    f"{output[-6000:]}", pytrace=False)
    return tmp / "html", output


# ------------------------------------------------------------------ the HTML


class _Refs(HTMLParser):
    """The ids of a page and the local targets of its links, images and scripts."""

    def __init__(self):
        super().__init__()
        self.ids, self.targets = set(), []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("name"):
            self.ids.add(attrs["name"])
        for key in ("href", "src"):
            value = attrs.get(key)
            if value and (tag, key) in {("a", "href"), ("img", "src"), ("link", "href"),
                                        ("script", "src"), ("source", "src")}:
                self.targets.append((tag, value))


def _pages(html):
    return sorted(p for p in html.rglob("*.html") if "_static" not in p.parts)


@functools.lru_cache(maxsize=None)
def _parse(path: Path) -> _Refs:
    refs = _Refs()
    refs.feed(path.read_text(encoding="utf-8", errors="replace"))
    return refs


def test_build_succeeds_and_says_how_long(book):
    html, output = book
    assert (html / "index.html").is_file(), output[-3000:]
    assert re.search(r"built in \d+ s", output), output[-3000:]


def test_internal_links_anchors_and_images_resolve(book):
    html, _ = book
    broken = []
    for page in _pages(html):
        for tag, target in _parse(page).targets:
            parts = urlsplit(target)
            if parts.scheme or parts.netloc or target.startswith(("mailto:", "data:")):
                continue
            path = unquote(parts.path)
            dest = page if not path else (page.parent / path).resolve()
            if dest.is_dir():
                dest = dest / "index.html"
            where = f"{page.relative_to(html)}: <{tag}> {target}"
            if not dest.is_file():
                broken.append(f"{where} -> no such file")
            elif tag == "img" and dest.stat().st_size == 0:
                broken.append(f"{where} -> empty image")
            elif parts.fragment and dest.suffix == ".html" and parts.fragment not in _parse(dest).ids:
                broken.append(f"{where} -> no id {parts.fragment!r} in {dest.name}")
    assert not broken, f"{len(broken)} broken internal references:\n" + "\n".join(broken[:40])


def test_every_page_of_the_book_is_there(book):
    html, _ = book
    expected = (["index", "install", "teachers", "benchmarks", "benchmarks-method", "changelog",
                 "chapters/index", "api/index"]
                + [f"chapters/{c}" for c in CHAPTERS]
                + [f"api/{m}" for m in ("functional", "layers", "losses", "optim", "gradcheck",
                                        "gan", "gan_losses", "penalty", "spectral", "train", "data", "metrics", "plot",
                                        "checkpoint", "rundir", "kernels")])
    missing = [name for name in expected if not (html / f"{name}.html").is_file()]
    assert not missing, f"pages missing from the book: {missing}"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_has_its_outputs_and_figures(book, chapter):
    html, _ = book
    text = (html / "chapters" / f"{chapter}.html").read_text(encoding="utf-8")
    assert "cell_output" in text, f"{chapter}: no executed output in the page"
    images = [t for tag, t in _parse(html / "chapters" / f"{chapter}.html").targets if tag == "img"]
    assert images, f"{chapter}: no figure in the page"
    assert "Traceback (most recent call last)" not in text, f"{chapter}: a traceback in an output"


def test_api_pages_render_the_docstrings(book):
    html, _ = book
    text = (html / "api" / "gan.html").read_text(encoding="utf-8")
    for name in ("GAN", "generator_step", "discriminator_step", "ConditionalGAN", "EMA"):
        assert f'id="minigan.gan.{name}' in text or f"minigan.gan.GAN.{name}" in text, name


# --------------------------------------------------------------- the browser


@pytest.fixture(scope="module")
def browser_page(book):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the browser check needs Playwright: pip install -e '.[docs]'")
    chromium = next((shutil.which(name) for name in ("chromium", "chromium-browser",
                                                      "google-chrome") if shutil.which(name)),
                    None)
    if chromium is None:
        pytest.skip("the browser check needs a Chromium binary: apt-get install chromium")
    html, _ = book
    handler = functools.partial(_QuietHandler, directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium,
                                    args=["--no-sandbox", "--disable-gpu"])
        try:
            yield browser, base
        finally:
            browser.close()
            server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _screenshot_dir(tmp_path):
    folder = Path(os.environ.get("MINIGAN_BOOK_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


PAGES = {
    "home": ("index.html", {"min_images": 1, "maths": False}),
    "chapter": ("chapters/05_discriminator.html", {"min_images": 4, "maths": True}),
    "api": ("api/functional.html", {"min_images": 0, "maths": False}),
}


@pytest.mark.parametrize("name", list(PAGES))
def test_page_in_headless_chromium(browser_page, name, tmp_path):
    browser, base = browser_page
    path, expect = PAGES[name]
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors, outside = [], []
    page.on("console", lambda msg: errors.append(f"console {msg.type}: {msg.text}")
            if msg.type == "error" else None)
    page.on("pageerror", lambda err: errors.append(f"page error: {err}"))

    def only_local(route):
        if route.request.url.startswith(base):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    response = page.goto(base + path, wait_until="load")
    assert response is not None and response.ok, f"{path}: HTTP {response and response.status}"
    page.wait_for_load_state("networkidle")

    if expect["maths"]:
        page.wait_for_function("window.MathJax && MathJax.startup && MathJax.startup.promise",
                               timeout=30_000)
        page.evaluate("MathJax.startup.promise")
        typeset = page.locator("mjx-container").count()
        merrors = page.locator("mjx-merror").count()
        assert typeset >= 10, f"{path}: only {typeset} formulas typeset by MathJax"
        assert merrors == 0, f"{path}: {merrors} formulas MathJax could not parse"
        leftover = page.evaluate(
            "Array.from(document.querySelectorAll('.math')).filter("
            "e => !e.querySelector('mjx-container')).length")
        assert leftover == 0, f"{path}: {leftover} maths elements left as raw TeX"

    images = page.evaluate(
        "Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
    not_loaded = [src for src, complete, width in images if not (complete and width > 0)]
    assert not not_loaded, f"{path}: images that did not load: {not_loaded}"
    content_images = page.locator("article img").count()
    assert content_images >= expect["min_images"], (
        f"{path}: {content_images} figures in the page, expected at least {expect['min_images']}")
    if name == "api":
        assert page.locator("dl.py.function dt.sig").count() >= 10, f"{path}: no signatures"

    shot = _screenshot_dir(tmp_path) / f"book_{name}.png"
    page.screenshot(path=str(shot), full_page=False)
    if name == "chapter":  # the input-gradient field, up close (colours, arrows)
        page.locator("article img").nth(4).scroll_into_view_if_needed()
        page.screenshot(path=str(shot.with_name("book_chapter_figure.png")))
    page.close()
    assert not outside, f"{path}: requests to other hosts (the book must work offline): {outside}"
    assert not errors, f"{path}: errors in the browser console:\n" + "\n".join(errors)
