"""report.html in a real browser engine (headless Chromium): every image decodes, every section is there, and
a screenshot is saved. Skipped where no Chromium is installed; `.ci/run` installs Debian's, so CI runs it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from vcal_cli import ExtractOptions, audit
from vcal_cli.reports import write_report
from vcal_cli.reports.sections import list_sections

from .conftest import SAMPLES

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no Chromium installed (apt-get install chromium)")

# Appended to a copy of the page: once everything has loaded, the page writes what it sees into the DOM.
PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images].map(i => ({alt: i.alt, w: i.naturalWidth, h: i.naturalHeight, done: i.complete}));
  const ids = [...document.querySelectorAll("section[id]")].map(s => s.id);
  const links = [...document.querySelectorAll("nav a")].map(a => a.getAttribute("href"));
  const out = document.createElement("pre"); out.id = "probe";
  out.textContent = JSON.stringify({imgs, ids, links, width: document.documentElement.scrollWidth});
  document.body.appendChild(out);
});
</script>"""


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert BROWSER is not None
    cmd = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def test_report_html_renders_in_chromium(tmp_path: Path) -> None:
    rep = audit(SAMPLES / "mlp_digits.safetensors", data="digits", options=ExtractOptions.of(cache_dir=str(tmp_path)))
    out = write_report(rep, tmp_path / "report")
    page = (out / "report.html").read_text()
    assert "http://" not in page and "https://" not in page  # self-contained: nothing to fetch
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    r = _chromium("--window-size=1280,2000", "--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    m = re.search(r'<pre id="probe">(.*?)</pre>', r.stdout, re.S)
    assert m, f"the page did not run its probe (rc {r.returncode}): {r.stderr[-500:]}"
    seen = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    names = sorted(p.name for p in out.glob("*.png"))
    assert sorted(i["alt"] for i in seen["imgs"]) == names  # every PNG of the report is on the page
    assert all(i["done"] and i["w"] > 100 and i["h"] > 100 for i in seen["imgs"]), seen["imgs"]
    expected = {"verdict", "setup", "metrics", "reliability", "selective", "per-class"}
    assert expected <= set(seen["ids"]) and set(seen["ids"]) <= {"verdict", "setup"} | {s.key for s in list_sections()}
    assert seen["links"] == [f"#{i}" for i in seen["ids"]]  # the table of contents reaches every section
    assert seen["width"] <= 1280  # fits a laptop screen without scrolling sideways
    shot = tmp_path / "report.png"
    r = _chromium("--window-size=1280,2000", f"--screenshot={shot}", (out / "report.html").as_uri())
    assert shot.is_file() and shot.stat().st_size > 10_000, r.stderr[-500:]
