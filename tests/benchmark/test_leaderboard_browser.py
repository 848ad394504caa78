"""The HTML leaderboard in a real headless browser (Chromium, Debian's ``chromium`` package):
it renders (a screenshot with content), its table sorts on a header click, every embedded
figure loads; at 1400 px the headline table needs no horizontal scroll and every figure's
text is at least 10 px on screen. Slow (a browser start per check); CI installs Chromium and
runs it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from test_leaderboard import OUTCOMES, write_run

from benchmark.reporting import leaderboard

CHROMIUM = next(
    (shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)), None
)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install chromium)"),
]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1400,1000"]
# Appended to a copy of the page: once loaded, click the first mean column twice and report
# the method order after each click and whether every image decoded.
PROBE = """<script>
window.addEventListener("load", function () {
  var order = function () {
    return Array.from(document.querySelectorAll("table.headline tbody tr")).map(function (r) { return r.cells[0].textContent; });
  };
  var header = document.querySelectorAll("table.headline th")[2];
  header.click(); var ascending = order();
  header.click(); var descending = order();
  var images = Array.from(document.images).map(function (i) { return i.complete && i.naturalWidth > 0; });
  var scales = Array.from(document.images).map(function (i) { return i.getBoundingClientRect().width / i.naturalWidth; });
  var headline = document.querySelector("table.headline").getBoundingClientRect();
  var out = document.createElement("pre"); out.id = "probe";
  out.textContent = JSON.stringify({ascending: ascending, descending: descending, images: images, scales: scales,
    headline_right: headline.right, page_width: document.documentElement.scrollWidth, viewport: window.innerWidth});
  document.body.appendChild(out);
});
</script></body>"""


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    """A leaderboard of the hand-made runs with the figures a run draws."""
    from benchmark.reporting import reports

    run_dir = write_run(tmp_path_factory.mktemp("browser") / "run", OUTCOMES)
    reports.write_report(run_dir)  # plots/ as a run draws them
    leaderboard.write_leaderboard(run_dir)
    return run_dir / "leaderboard.html"


def _chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, *args], capture_output=True, text=True, timeout=120, check=True)


def test_the_page_renders_in_chromium(page, tmp_path):
    from matplotlib.image import imread

    shot = tmp_path / "shot.png"
    _chromium(f"--screenshot={shot}", page.as_uri())
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (1000, 1400)
    assert (pixels < 0.5).mean() > 0.01  # text and table lines, not a blank page
    assert np.unique(pixels.reshape(-1, 3), axis=0).shape[0] > 50  # figures' colours, not text alone


def test_the_table_sorts_and_every_image_loads(page, tmp_path):
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE), encoding="utf-8")
    dom = _chromium("--dump-dom", "--virtual-time-budget=5000", probe.as_uri()).stdout
    result = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', dom).group(1))
    # last head acc means (hand-computed): ldifs 85 < finetune 87 < ldifs+replay 88
    assert result["ascending"] == ["ldifs", "finetune", "ldifs+replay"]
    assert result["descending"] == ["ldifs+replay", "finetune", "ldifs"]
    assert len(result["images"]) >= 5 and all(result["images"])


def test_at_1400_px_the_headline_fits_and_figure_text_is_readable(page, tmp_path):
    """No horizontal scroll for the headline columns; the smallest text a figure draws
    (plots.MIN_TEXT_PT at PNG_DPI) at least 10 px as shown."""
    from benchmark.reporting.plots import MIN_TEXT_PT, PNG_DPI

    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE), encoding="utf-8")
    dom = _chromium("--dump-dom", "--virtual-time-budget=5000", probe.as_uri()).stdout
    result = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', dom).group(1))
    assert result["viewport"] == 1400
    assert result["headline_right"] <= result["viewport"] and result["page_width"] <= result["viewport"]
    smallest = [scale * MIN_TEXT_PT * PNG_DPI / 72 for scale in result["scales"]]
    assert min(smallest) >= 10, smallest
