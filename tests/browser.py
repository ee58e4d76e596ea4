"""Render checks for the built HTML book in headless Chromium, with no network.

The book (``jupyter-book build book``) must show its Altair charts and typeset its
math offline: vega/vega-lite/vega-embed and MathJax are served from
``_static/vendor/``. These helpers load a built page in headless Chromium with
every host name unresolvable, so anything the page tried to fetch from the
internet would fail, and then inspect the rendered DOM:

* ``dump_dom(path)`` -- the DOM after scripts ran (``--dump-dom``);
* ``screenshot(path, png)`` -- a PNG of the rendered page (``--screenshot``);
* ``chart_status(dom)``, ``math_status(dom)`` -- what vega-embed / MathJax drew;
* ``page_network_requests(netlog)`` -- http(s) URLs the page itself requested;
* ``check_page(path, png=...)`` -- all of the above, as assertions.

``tests/test_report.py`` uses them on a book it builds; Chromium comes from Debian
(``apt-get install chromium``) or ``CHROMIUM=/path/to/chrome``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT_DIR = REPO_ROOT / "_build" / "render-check"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
VIRTUAL_TIME_BUDGET_MS = 10_000
WINDOW_SIZE = (1280, 2000)

CHART_DIV_RE = re.compile(r'<div id="(altair-viz-[0-9a-f]+)"')
STATIC_MATH_RE = re.compile(r'<(?:div|span) class="math notranslate nohighlight"')


# --- Chromium -----------------------------------------------------------------


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable, or None."""
    env = os.environ.get("CHROMIUM")
    if env:
        return env if Path(env).exists() or shutil.which(env) else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium_command(
    path: Path | str,
    *actions: str,
    user_data_dir: Path | str,
    budget_ms: int = VIRTUAL_TIME_BUDGET_MS,
    offline: bool = True,
    netlog: Path | str | None = None,
) -> list[str]:
    """The headless Chromium command line that loads ``path`` and performs ``actions``."""
    chromium = find_chromium()
    if chromium is None:
        raise RuntimeError("chromium not found (apt-get install chromium, or set CHROMIUM)")
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={user_data_dir}",
        f"--virtual-time-budget={budget_ms}",
    ]
    if offline:
        # No host name resolves: a page that needs the internet cannot get it.
        cmd.append("--host-resolver-rules=MAP * ~NOTFOUND")
    if netlog is not None:
        cmd.append(f"--log-net-log={netlog}")
    cmd += [*actions, Path(path).resolve().as_uri()]
    return cmd


def _run_chromium(path: Path | str, *actions: str, timeout: float = 120, **kwargs) -> str:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = chromium_command(path, *actions, user_data_dir=profile, **kwargs)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return proc.stdout


def dump_dom(path: Path | str, **kwargs) -> str:
    """The page's DOM after its scripts ran (up to the virtual-time budget)."""
    return _run_chromium(path, "--dump-dom", **kwargs)


def screenshot(path: Path | str, png: Path | str, window_size=WINDOW_SIZE, **kwargs) -> Path:
    """Save a PNG screenshot of the rendered page to ``png``."""
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    width, height = window_size
    _run_chromium(path, f"--screenshot={png}", f"--window-size={width},{height}", **kwargs)
    if not png.is_file() or png.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no screenshot to {png}")
    return png


def page_network_requests(netlog: Path | str) -> list[str]:
    """http(s) URLs requested by the page (not by the browser's own services).

    Chromium itself contacts Google update/account services; those requests
    have no initiating origin, whereas requests made by a ``file://`` page have
    the opaque initiator ``"null"``.
    """
    data = json.loads(Path(netlog).read_text())
    start_job = data["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for event in data.get("events", []):
        params = event.get("params") or {}
        url = params.get("url", "")
        if event.get("type") != start_job or not url.startswith(("http://", "https://")):
            continue
        if params.get("initiator") == "not an origin":
            continue
        urls.append(url)
    return sorted(set(urls))


# --- DOM inspection --------------------------------------------------------------

# HTML elements without an end tag
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source"}
    | {"track", "wbr"}
)


@dataclass
class ChartState:
    div_id: str
    svg_marks: int = 0
    canvases: int = 0
    error: str = ""

    @property
    def drawn(self) -> bool:
        return (self.svg_marks + self.canvases) > 0 and not self.error


class _ChartScanner(HTMLParser):
    """Finds Altair output divs and what vega-embed drew inside each."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.charts: list[ChartState] = []
        self._current: ChartState | None = None
        self._depth = 0
        self._in_error = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if self._current is None:
            div_id = attrs.get("id") or ""
            if tag == "div" and div_id.startswith("altair-viz-"):
                self._current = ChartState(div_id)
                self.charts.append(self._current)
                self._depth = 1
            return
        if tag not in _VOID:
            self._depth += 1
        classes = (attrs.get("class") or "").split()
        if tag == "svg" and "marks" in classes:
            self._current.svg_marks += 1
        elif tag == "canvas":
            self._current.canvases += 1
        elif "error" in classes:
            self._in_error = True

    def handle_startendtag(self, tag, attrs):
        if self._current is not None and tag == "canvas":
            self._current.canvases += 1

    def handle_endtag(self, tag):
        if self._current is None or tag in _VOID:
            return
        self._depth -= 1
        if self._depth == 0:
            self._current = None
            self._in_error = False

    def handle_data(self, data):
        if self._current is not None and self._in_error:
            self._current.error += data


def chart_status(dom: str) -> list[ChartState]:
    """One entry per Altair chart div in ``dom``, with what was drawn in it."""
    scanner = _ChartScanner()
    scanner.feed(dom)
    scanner.close()
    return scanner.charts


@dataclass
class MathState:
    containers: int
    errors: list[str] = field(default_factory=list)


def math_status(dom: str) -> MathState:
    """How many MathJax containers were typeset, and any TeX errors."""
    errors = re.findall(r'<mjx-merror[^>]*data-mjx-error="([^"]*)"', dom)
    return MathState(containers=len(re.findall(r"<mjx-container\b", dom)), errors=errors)


def external_script_srcs(html: str) -> list[str]:
    """``src`` of every ``<script>`` that loads from http(s)."""
    return re.findall(r'<script\b[^>]*\bsrc="(https?://[^"]*)"', html)


# --- Page-level check --------------------------------------------------------------


@dataclass
class PageReport:
    page: Path
    charts: list[ChartState]
    math: MathState
    network: list[str]
    screenshot: Path | None


def check_page(page: Path | str, png: Path | str | None = None) -> PageReport:
    """Render ``page`` offline and assert its charts were drawn and math typeset.

    Expectations come from the static HTML: every Altair chart div must contain
    an ``<svg class="marks">`` or ``<canvas>`` drawn by vega-embed, every Sphinx
    math element must become a MathJax container, and neither the DOM nor the
    network log may show anything fetched from the internet.
    """
    page = Path(page)
    static_html = page.read_text(encoding="utf-8")
    expected_charts = CHART_DIV_RE.findall(static_html)
    expected_math = len(STATIC_MATH_RE.findall(static_html))

    with tempfile.TemporaryDirectory(prefix="netlog-") as tmp:
        netlog = Path(tmp) / "netlog.json"
        dom = dump_dom(page, netlog=netlog)
        network = page_network_requests(netlog)

    charts = chart_status(dom)
    assert [c.div_id for c in charts] == expected_charts, (
        f"{page.name}: chart divs in rendered DOM {[c.div_id for c in charts]} "
        f"!= static HTML {expected_charts}"
    )
    not_drawn = [c for c in charts if not c.drawn]
    assert not not_drawn, f"{page.name}: charts not drawn: {not_drawn}"

    math = math_status(dom)
    assert math.containers >= expected_math, (
        f"{page.name}: {math.containers} MathJax containers for {expected_math} math elements"
    )
    assert not math.errors, f"{page.name}: MathJax errors: {math.errors}"

    assert "cdn.jsdelivr.net" not in dom, f"{page.name}: DOM references cdn.jsdelivr.net"
    assert not external_script_srcs(dom), (
        f"{page.name}: scripts loaded from the internet: {external_script_srcs(dom)}"
    )
    assert not network, f"{page.name}: page requested network URLs: {network}"

    shot = screenshot(page, png) if png is not None else None
    return PageReport(page, charts, math, network, shot)


# --- Layout -------------------------------------------------------------------

WIDTH_PROBE = """<script>
window.addEventListener("load", () => setTimeout(() => {
  const column = document.querySelector("article.bd-article") || document.querySelector("main");
  const box = (e) => e.getBoundingClientRect().width;
  const items = [
    ...[...document.querySelectorAll(".vega-embed")].map((e) => {
      const drawn = e.querySelector("svg.marks, canvas");
      return {kind: "chart", width: drawn ? box(drawn) : e.scrollWidth};
    }),
    ...[...column.querySelectorAll("table")].map((e) => ({
      kind: "table",
      width: Math.max(e.scrollWidth, ...[...e.rows].map((r) => r.scrollWidth)),
    })),
  ];
  const out = document.createElement("pre");
  out.id = "width-probe";
  const style = getComputedStyle(column);
  const inner = column.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  out.textContent = JSON.stringify({column: inner, items: items});
  document.body.appendChild(out);
}, 2000));
</script>"""


@dataclass
class Layout:
    column: float  # px: width of the page's content column
    items: list[dict] = field(default_factory=list)  # {"kind": "chart"|"table", "width": px}

    def too_wide(self, slack: float = 1.0) -> list[dict]:
        return [item for item in self.items if item["width"] > self.column + slack]


def layout(page: Path | str) -> Layout:
    """Widths of the content column and of every drawn chart and table (content width, scroll
    included) of ``page`` rendered offline at ``WINDOW_SIZE``."""
    page = Path(page)
    probe = page.with_name(f".probe-{page.name}")  # beside the page, so relative paths resolve
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", WIDTH_PROBE + "</body>"))
    try:
        dom = dump_dom(probe)
    finally:
        probe.unlink()
    found = re.search(r'<pre id="width-probe">(.*?)</pre>', dom, re.S)
    if found is None:
        raise AssertionError(f"{page.name}: the width probe did not run")
    data = json.loads(found.group(1).replace("&quot;", '"'))
    return Layout(data["column"], data["items"])


FIRST_SCREEN_PROBE = """
<script>
window.addEventListener("load", () => setTimeout(() => {
  const height = window.__probe_height;
  const items = [...document.querySelectorAll("main li, article li, .bd-article li")]
    .filter((li) => li.getBoundingClientRect().bottom <= height && li.getBoundingClientRect().top >= 0)
    .map((li) => li.textContent.trim());
  const out = document.createElement("pre");
  out.id = "screen-probe";
  out.textContent = JSON.stringify(items);
  document.body.appendChild(out);
}, 1500));
</script>"""


def first_screen_items(page: Path | str, size: tuple[int, int] = (1280, 800)) -> list[str]:
    """The texts of the list items of ``page``'s content that lie wholly within its first screen of
    ``size`` pixels (width x height), rendered offline."""
    page = Path(page)
    probe = page.with_name(f".screen-{page.name}")
    script = f"<script>window.__probe_height = {size[1]};</script>" + FIRST_SCREEN_PROBE
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", script + "</body>"))
    try:
        dom = _run_chromium(probe, f"--window-size={size[0]},{size[1]}", "--dump-dom")
    finally:
        probe.unlink()
    found = re.search(r'<pre id="screen-probe">(.*?)</pre>', dom, re.S)
    if found is None:
        raise AssertionError(f"{page.name}: the first-screen probe did not run")
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
