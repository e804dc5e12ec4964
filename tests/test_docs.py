"""The documentation: the site builds strictly, the examples run, a browser
reads it.

- `mkdocs build --strict` (mkdocs.yml, the `docs` extra) builds the guides
  and the API reference into a temporary folder, once for this module: a
  broken link, a missing page or a docstring that does not render fails it.
  Every name of each public module's `__all__` has its entry in the
  module's reference page.
- Every `>>>` example in the docstrings of `keras_decay` and
  `keras_decay_cli` runs as a doctest, one test per docstring, on every
  backend pass. The namespace of an example is documented in
  docs/index.md: `keras`, `keras_decay`, `np` (NumPy), and the names of the
  public module the docstring belongs to (`from keras_decay.layers import
  *` for a docstring of `keras_decay.layers._drop_path`). Floats are
  printed rounded in the examples, so the output is the same on every
  backend.
- The built site is served on 127.0.0.1 and headless Chromium (Debian's
  `chromium`; `.ci/run` installs it) loads the home page and one API page,
  finds a known heading in each and takes a screenshot of each.

The build and the browser do not depend on the Keras backend: they run once,
in the TensorFlow pass.
"""

import doctest
import functools
import http.server
import importlib
import importlib.util
import os
import pkgutil
import re
import threading
import types

import keras
import numpy as np
import pytest

import keras_decay
import keras_decay_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One reference page per public module (docs/api/<page>.md).
API_PAGES = {
    "regularizers": ["keras_decay.regularizers"],
    "optimizers": ["keras_decay.optimizers"],
    "schedules": ["keras_decay.schedules"],
    "layers": ["keras_decay.layers"],
    "callbacks": ["keras_decay.callbacks"],
    "rules": ["keras_decay.rules"],
    "conventions": ["keras_decay.conventions"],
    "apply": ["keras_decay.apply"],
    "experiment": [
        "keras_decay.experiment",
        "keras_decay_cli.options",
        "keras_decay.experiment.compare",
        "keras_decay.experiment.sweep",
        "keras_decay.experiment.trial",
        "keras_decay.experiment.data",
        "keras_decay.experiment.runner",
        "keras_decay.experiment.engine",
        "keras_decay.experiment.report",
    ],
}
PUBLIC_MODULES = [name for names in API_PAGES.values() for name in names]
PUBLIC_MODULES += ["keras_decay_cli"]


def _load_script(name):
    """A script of docs/ as a module (docs/ is not a package)."""
    path = os.path.join(ROOT, "docs", name + ".py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Headless Chromium, with the flags of docs/screenshot_tensorboard.py.
BROWSER = _load_script("screenshot_tensorboard")


# --- the doctests -----------------------------------------------------------


def _package_modules():
    modules = []
    for package in (keras_decay, keras_decay_cli):
        modules.append(package)
        prefix = package.__name__ + "."
        for info in pkgutil.walk_packages(package.__path__, prefix):
            if not info.name.endswith("__main__"):
                modules.append(importlib.import_module(info.name))
    return modules


def _public_module(name):
    """The public module whose reference shows the docstring `name`."""
    matches = [m for m in PUBLIC_MODULES if (name + ".").startswith(m + ".")]
    return max(matches, key=len) if matches else None


def _namespace(test):
    """The documented namespace of an example (see the module docstring)."""
    namespace = {"keras": keras, "keras_decay": keras_decay, "np": np}
    public = _public_module(test.name)
    if public is not None:
        module = importlib.import_module(public)
        for name in getattr(module, "__all__", ()):
            namespace[name] = getattr(module, name)
    return namespace


def _doctests():
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests, seen = {}, set()
    for module in _package_modules():
        for test in finder.find(module):
            key = (test.filename, test.lineno)
            if test.examples and key not in seen:
                seen.add(key)
                tests[test.name] = test
    return tests


DOCTESTS = _doctests()


def test_the_docstrings_have_examples():
    # The collection finds the examples (a broken finder would pass every
    # parametrised test below by collecting none).
    assert len(DOCTESTS) >= 30, sorted(DOCTESTS)


@pytest.mark.parametrize("name", sorted(DOCTESTS))
def test_docstring_example(name):
    test = DOCTESTS[name]
    test.globs = _namespace(test)
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    )
    report = []
    result = runner.run(test, out=report.append, clear_globs=True)
    assert result.failed == 0, "".join(report)


# --- the site ---------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site, built once for this module by `mkdocs build --strict`."""
    pytest.importorskip("mkdocs", reason="the `docs` extra is not installed")
    from mkdocs import config as mkdocs_config
    from mkdocs.commands import build

    site_dir = str(tmp_path_factory.mktemp("site"))
    cwd = os.getcwd()
    os.chdir(ROOT)  # mkdocs.yml names the Griffe extensions by path
    try:
        config = mkdocs_config.load_config(
            os.path.join(ROOT, "mkdocs.yml"), site_dir=site_dir, strict=True
        )
        build.build(config)
    finally:
        os.chdir(cwd)
    return site_dir


def _read(site, page):
    with open(os.path.join(site, page, "index.html"), encoding="utf-8") as f:
        return f.read()


@pytest.mark.backend_independent
def test_site_builds_strictly_with_every_page(site):
    for page in ["getting-started", "choosing-lambda", "benchmarks"]:
        assert "<h1" in _read(site, page)
    for image in ["comparison.png", "sweep.png", "tensorboard_scalars.png"]:
        assert os.path.getsize(os.path.join(site, image)) > 10_000


def _entry_id(module, name):
    """The HTML id of `module.name`'s entry: a submodule has its own."""
    value = getattr(module, name)
    if isinstance(value, types.ModuleType):
        return value.__name__
    return f"{module.__name__}.{name}"


@pytest.mark.backend_independent
@pytest.mark.parametrize("page", sorted(API_PAGES))
def test_api_page_lists_every_public_name(site, page):
    html = _read(site, os.path.join("api", page))
    for module_name in API_PAGES[page]:
        module = importlib.import_module(module_name)
        ids = [_entry_id(module, name) for name in module.__all__]
        missing = [i for i in ids if f'id="{i}"' not in html]
        assert not missing, f"{page}: no entry for {missing}"
    # The docstrings' examples are shown as code (docs/griffe_extensions.py),
    # not as Markdown quotes of their `>>>` lines.
    assert '<code><span class="o">&gt;&gt;&gt;</span>' in html
    assert "<blockquote>" not in html


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def served(site):
    """The site on http://127.0.0.1:<free port>/."""
    handler = functools.partial(_QuietHandler, directory=site)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.mark.backend_independent
@pytest.mark.skipif(
    BROWSER.find_chromium() is None,
    reason="no chromium: install Debian's `chromium` (.ci/run does)",
)
@pytest.mark.parametrize(
    "page, heading",
    [
        ("", "Weight decay and its relatives for Keras 3"),
        ("api/regularizers/", "keras_decay.regularizers"),
    ],
)
def test_browser_reads_the_page(served, tmp_path, page, heading):
    url = served + page
    profile = tmp_path / "profile"
    dom = BROWSER.chromium(profile, "--dump-dom", url)
    headings = re.findall(r"<h[12][^>]*>(.*?)</h[12]>", dom, re.S)
    assert any(heading in h for h in headings), headings
    screenshot = tmp_path / "page.png"
    BROWSER.chromium(
        profile, f"--screenshot={screenshot}", "--window-size=1280,900", url
    )
    with open(screenshot, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000  # a rendered page, not a blank one
