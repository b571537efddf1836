"""The report as a browser shows it: the tiny workflow's results/report/index.html rendered by
headless Chromium (tests/chromium.sh: no sandbox, no GPU, no network, a fresh profile).

The report itself is never modified. A wrapper page in a temporary folder loads it in an iframe and,
on the iframe's load event, writes what the browser made of it (every image's decode state and
size, every table's cells, any non-data resource requested) into its own DOM as JSON, which
``--dump-dom`` prints. ``--allow-file-access-from-files`` lets the file:// wrapper read the
file:// report's DOM. A corrupted copy of the report checks that the probe does catch a broken
image. A screenshot checks that the page paints (not blank, figures in colour).

Skips only when no Chromium binary is found; CI installs Debian's ``chromium``.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from workflow_helpers import REPO, TINY_CONFIG, skip_or_fail, snakemake, write_config

pytestmark = pytest.mark.slow

HELPER = REPO / "tests/chromium.sh"
DATA_PNG = "data:image/png;base64,"

PROBE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>report probe</title></head><body>
<pre id="result">pending</pre>
<iframe id="page" style="width: 1400px; height: 3000px; border: 0" src="{src}"></iframe>
<script>
const frame = document.getElementById("page");
frame.addEventListener("load", () => {{
  const out = document.getElementById("result");
  try {{
    const doc = frame.contentDocument;
    const text = (el) => el.textContent.trim();
    const headingOf = (el) => {{
      for (let e = el.previousElementSibling; e; e = e.previousElementSibling)
        if (/^H[1-6]$/.test(e.tagName)) return text(e);
      return "";
    }};
    const images = Array.from(doc.images, (img) => {{
      const box = img.getBoundingClientRect();
      return {{alt: img.alt, src_prefix: (img.getAttribute("src") || "").slice(0, 22),
              complete: img.complete, natural_width: img.naturalWidth,
              natural_height: img.naturalHeight, shown_width: box.width, shown_height: box.height}};
    }});
    const tables = Array.from(doc.querySelectorAll("table"), (table) => {{
      // header rows: the thead's, else leading rows made only of <th>; body: all other rows,
      // every cell (a <th> row label in the body counts as a cell that must be filled too)
      const rows = Array.from(table.rows);
      const isHead = (r) => r.parentElement.tagName === "THEAD" ||
        (!table.tHead && Array.from(r.cells).every((c) => c.tagName === "TH"));
      return {{heading: headingOf(table),
              header: rows.filter(isHead).map((r) => Array.from(r.cells, text)),
              body: rows.filter((r) => !isHead(r)).map((r) => Array.from(r.cells, text))}};
    }});
    const resources = frame.contentWindow.performance.getEntriesByType("resource")
      .map((e) => e.name).filter((n) => !n.startsWith("data:"));
    out.textContent = JSON.stringify({{title: doc.title, images, tables, resources,
      headings: Array.from(doc.querySelectorAll("h2"), text),
      height: doc.documentElement.scrollHeight}});
  }} catch (e) {{
    out.textContent = "ERROR " + e;
  }}
}});
</script>
</body></html>
"""


def chromium(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(HELPER), *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def browser():
    found = chromium("--find", timeout=30)
    if found.returncode != 0:
        skip_or_fail(f"headless Chromium not available: {found.stderr.strip()}")
    return found.stdout.strip()


@pytest.fixture(scope="module")
def report(browser, tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("report_html_run")
    snakemake(workdir, "--configfile", str(write_config(workdir, TINY_CONFIG)))
    page = workdir / "results/report/index.html"
    assert page.is_file()
    return page


def inspect(page: Path, tmp: Path) -> dict:
    """What Chromium made of ``page``: images, tables, headings, resources requested."""
    probe = tmp / "probe.html"
    probe.write_text(PROBE.format(src=html.escape(page.resolve().as_uri(), quote=True)))
    result = chromium("--allow-file-access-from-files", "--window-size=1400,3000", "--dump-dom", probe.as_uri())
    assert result.returncode == 0, f"chromium failed ({result.returncode}):\n{result.stderr[-4000:]}"
    match = re.search(r'<pre id="result">(.*?)</pre>', result.stdout, re.S)
    assert match, f"no probe result in the dumped DOM:\n{result.stdout[:2000]}\n{result.stderr[-2000:]}"
    payload = html.unescape(match.group(1))
    assert payload not in ("pending", "") and not payload.startswith("ERROR"), \
        f"the probe did not read the report: {payload}\n{result.stderr[-2000:]}"
    return json.loads(payload)


@pytest.fixture(scope="module")
def rendered(report, tmp_path_factory) -> dict:
    return inspect(report, tmp_path_factory.mktemp("probe"))


def broken_images(state: dict) -> list[str]:
    return [img["alt"] for img in state["images"]
            if not (img["complete"] and img["natural_width"] > 0 and img["natural_height"] > 0)]


def test_page_loads_with_title_and_sections(rendered, report):
    assert rendered["title"] == TINY_CONFIG["report"]["title"]
    for section in ("Interpolation vs super-resolution, x4_bicubic", "Training curves", "Images per class"):
        assert any(h.startswith(section) for h in rendered["headings"]), (section, rendered["headings"])
    assert rendered["height"] > 2000  # tables and figures laid out, not an empty page


def test_every_image_decodes_and_is_shown(rendered, report):
    images = rendered["images"]
    source = report.read_text()
    # every <img> of the file is rendered and is an embedded PNG; the count grows with the report's
    # sections, so only the SR figures every run has are named
    assert len(images) == source.count("<img") == source.count(DATA_PNG) >= 5
    assert {"samples_x4_bicubic", "quality_x4_bicubic", "training_curves"} <= {img["alt"] for img in images}
    assert broken_images(rendered) == []
    for img in images:
        assert img["src_prefix"] == DATA_PNG, img
        assert img["natural_width"] >= 100 and img["natural_height"] >= 100, img
        assert img["shown_width"] > 100 and img["shown_height"] > 30, img


def test_no_network_or_file_requests(rendered):
    assert rendered["resources"] == []


# Tables that are legitimately empty when their CSV under results/report/tables/ is: nothing set aside.
MAY_BE_EMPTY = {"Quarantined and rejected images": "rejected.csv"}


def test_every_table_is_filled(rendered, report):
    tables = rendered["tables"]
    assert len(tables) >= 5
    for table in tables:
        where = table["heading"] or "table without heading"
        assert table["header"] and all(table["header"][0]), f"{where}: empty header {table['header']}"
        width = len(table["header"][0])
        if where in MAY_BE_EMPTY:
            csv = report.parent / "tables" / MAY_BE_EMPTY[where]
            expected = len(pd.read_csv(csv))
            assert len(table["body"]) == expected, f"{where}: {len(table['body'])} rows shown, {csv.name} has {expected}"
        else:
            assert len(table["body"]) >= 1, f"{where}: no rows"
        for row in table["body"]:
            assert len(row) == width, f"{where}: row {row} has {len(row)} cells, header {width}"
            assert all(row), f"{where}: empty cell in {row}"
            assert not any(cell.lower() in ("nan", "none", "null", "undefined") for cell in row), f"{where}: {row}"


def test_sr_table_has_numbers_for_every_method(rendered):
    table = next(t for t in rendered["tables"] if t["heading"] == "Interpolation vs super-resolution, x4_bicubic")
    header = table["header"][0]
    rows = {row[0]: row for row in table["body"]}
    assert {"nearest", "bicubic", "srresnet"} <= set(rows)
    psnr = header.index("PSNR (dB)")
    for method, row in rows.items():
        mean = float(row[psnr].split("±")[0])
        assert 10 < mean < 60, (method, row[psnr])


def test_probe_detects_a_broken_image(report, tmp_path):
    """The check above can fail: a copy whose first figure is corrupted is reported broken."""
    page = report.read_text()
    start = page.index(DATA_PNG) + len(DATA_PNG)
    corrupted = page[:start] + "iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB" + "A" * 64 + page[page.index('"', start):]
    copy = tmp_path / "index.html"
    copy.write_text(corrupted)
    state = inspect(copy, tmp_path)
    assert len(broken_images(state)) == 1
    assert len(state["images"]) == page.count("<img")


def test_screenshot_is_not_blank(report, tmp_path):
    shot = tmp_path / "report.png"
    result = chromium(f"--screenshot={shot}", "--window-size=1400,3000", report.resolve().as_uri())
    assert result.returncode == 0 and shot.is_file(), result.stderr[-4000:]
    image = cv2.imread(str(shot), cv2.IMREAD_COLOR)
    assert image is not None and image.shape == (3000, 1400, 3)
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    assert gray.std() > 10, f"screenshot looks blank (grey std {gray.std():.2f})"
    assert (gray < 128).mean() > 0.005, "almost no dark (text) pixels"
    assert (gray > 250).mean() > 0.3, "no white page background"
    saturation = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)[:, :, 1]
    assert (saturation > 80).mean() > 0.001, "no coloured pixels: the figures are not painted"
    assert np.unique(gray).size > 50


# --------------------------------------------------------------------------- viewer.html
# The probe drives the viewer as a user would (chooses another image, moves the slider, zooms with
# the wheel, searches by class, switches profile), waiting for each change to be drawn, and records
# what the page shows: the image named, a digest of every canvas, the metrics table. Chromium's
# virtual time lets --dump-dom wait for the page's asynchronous image decoding.
VIEWER_PROBE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>viewer probe</title></head><body>
<pre id="result">pending</pre>
<iframe id="page" style="width: 1400px; height: 1000px; border: 0" src="{src}"></iframe>
<script>
const frame = document.getElementById("page");
const out = document.getElementById("result");
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
async function until(check, what) {{
  for (let i = 0; i < 400; i++) {{
    const value = check();
    if (value) return value;
    await sleep(25);
  }}
  throw new Error("timed out waiting for " + what);
}}
// pixels are read through a scratch canvas made for repeated reads, so Chromium logs no advice
// about the page's own canvases (which are drawn, not read)
const scratch = document.createElement("canvas").getContext("2d", {{willReadFrequently: true}});
function digest(canvas) {{
  scratch.canvas.width = canvas.width;
  scratch.canvas.height = canvas.height;
  scratch.drawImage(canvas, 0, 0);
  const data = scratch.getImageData(0, 0, canvas.width, canvas.height).data;
  let hash = 0, sum = 0;
  for (let i = 0; i < data.length; i += 4) {{ hash = (Math.imul(hash, 31) + data[i]) >>> 0; sum += data[i]; }}
  return [hash, sum / (data.length / 4)];
}}
frame.addEventListener("load", async () => {{
  try {{
    const doc = frame.contentDocument, body = doc.body, $ = (id) => doc.getElementById(id);
    const errors = [];
    frame.contentWindow.addEventListener("error", (e) => errors.push(String(e.message)));
    frame.contentWindow.addEventListener("unhandledrejection", (e) => errors.push(String(e.reason)));
    const panels = () => Array.from(doc.querySelectorAll("#panels canvas"));
    const state = () => ({{shown: body.dataset.shown, current: $("current").textContent,
      panels: panels().map((c) => c.getAttribute("aria-label")), digests: panels().map(digest),
      compare: digest($("cmp")), split: $("cmp").dataset.split, zoom: $("zoom").textContent,
      scores: Array.from(doc.querySelectorAll("#scores tr"), (r) => Array.from(r.cells, (c) => c.textContent))}});
    await until(() => body.dataset.shown, "the first image");
    const first = state();
    const list = $("list");
    const listed = list.options.length;
    list.selectedIndex = listed - 1;
    list.dispatchEvent(new Event("change"));
    await until(() => body.dataset.shown !== first.shown, "another image");
    const second = state();
    $("slider").value = "150";
    $("slider").dispatchEvent(new Event("input"));
    const slid = state();
    const box = panels()[1].getBoundingClientRect();
    panels()[1].dispatchEvent(new WheelEvent("wheel", {{deltaY: -100, clientX: box.left + 30, clientY: box.top + 30,
      bubbles: true, cancelable: true}}));
    const zoomed = state();
    // the last class of the list (Y or X when the test cells hold them; any present class does)
    const picked = $("class").options[$("class").options.length - 1].value;
    $("class").value = picked;
    $("class").dispatchEvent(new Event("change"));
    const found = Array.from(list.options, (o) => o.textContent);
    const count = $("count").textContent;
    $("search").value = found.length ? found[0].split("  ")[0].slice(-6) : "none";
    $("search").dispatchEvent(new Event("input"));
    const searched = Array.from(list.options, (o) => o.textContent);
    const classes = Array.from($("class").options, (o) => o.value);
    $("profile").selectedIndex = 1;
    $("profile").dispatchEvent(new Event("change"));
    await until(() => body.dataset.shown.split("|")[0] !== first.shown.split("|")[0], "the other profile");
    const other = state();
    const resources = frame.contentWindow.performance.getEntriesByType("resource")
      .map((e) => e.name).filter((n) => !n.startsWith("data:"));
    out.textContent = JSON.stringify({{title: doc.title, listed, first, second, slid, zoomed, picked, found, count, other,
      searched, classes,
      resources, errors, images: JSON.parse($("data").textContent).images}});
  }} catch (e) {{
    out.textContent = "ERROR " + e + " " + e.stack;
  }}
}});
</script>
</body></html>
"""


@pytest.fixture(scope="module")
def viewer_run(report, tmp_path_factory) -> tuple[dict, str]:
    """What the probe saw, and Chromium's stderr (console messages are logged there)."""
    page = report.parent / "viewer.html"
    probe = tmp_path_factory.mktemp("viewer_probe") / "probe.html"
    probe.write_text(VIEWER_PROBE.format(src=html.escape(page.resolve().as_uri(), quote=True)))
    result = chromium("--allow-file-access-from-files", "--window-size=1400,1100", "--virtual-time-budget=60000",
                      "--enable-logging=stderr", "--v=0", "--dump-dom", probe.as_uri())
    assert result.returncode == 0, f"chromium failed ({result.returncode}):\n{result.stderr[-4000:]}"
    match = re.search(r'<pre id="result">(.*?)</pre>', result.stdout, re.S)
    assert match, f"no probe result in the dumped DOM:\n{result.stdout[:2000]}\n{result.stderr[-2000:]}"
    payload = html.unescape(match.group(1))
    assert payload not in ("pending", "") and not payload.startswith("ERROR"), \
        f"the probe could not drive the viewer: {payload}\n{result.stderr[-3000:]}"
    return json.loads(payload), result.stderr


def test_viewer_loads_without_errors_or_requests(viewer_run):
    state, stderr = viewer_run
    assert state["title"] == TINY_CONFIG["report"]["title"] + ": image viewer"
    assert state["errors"] == []
    console = [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == [], console
    assert state["resources"] == []


def test_viewer_shows_every_method_with_its_scores(viewer_run):
    state, _ = viewer_run
    first = state["first"]
    assert first["panels"] == ["LR", "nearest", "bicubic", "srresnet", "HR"]
    assert first["shown"] == "x4_bicubic|" + state["images"][0]["id"]
    assert state["listed"] == len(state["images"]) > 1
    # every panel painted with an image (not the empty grey #444); bicubic, the model and HR differ
    # (LR enlarged by pixel repetition may equal nearest)
    assert all(abs(mean - 0x44) > 0.5 for _, mean in first["digests"]), first["digests"]
    assert len({d[0] for d in first["digests"][1:]}) == 4
    scores = {row[0]: row[1:] for row in first["scores"][1:]}
    assert first["scores"][0] == ["method", "PSNR", "SSIM", "NIQE", "PIQE"]
    assert scores["LR"] == ["\u2014"] * 4 and scores["HR"][:2] == ["\u2014"] * 2
    for method in ("nearest", "bicubic", "srresnet"):
        assert 10 < float(scores[method][0]) < 60 and 0 < float(scores[method][1]) <= 1, (method, scores[method])


def test_choosing_another_image_changes_what_is_shown(viewer_run):
    state, _ = viewer_run
    first, second = state["first"], state["second"]
    assert second["shown"] == "x4_bicubic|" + state["images"][-1]["id"] != first["shown"]
    assert state["images"][-1]["id"] in second["current"]
    assert all(a[0] != b[0] for a, b in zip(first["digests"], second["digests"]))
    assert second["scores"] != first["scores"]


def test_slider_and_zoom_move(viewer_run):
    state, _ = viewer_run
    assert state["second"]["split"] == "210" and state["slid"]["split"] == "63"  # 420 px wide, 0.5 -> 0.15
    assert state["slid"]["compare"] != state["second"]["compare"]
    assert state["slid"]["digests"] == state["second"]["digests"]  # the slider moves only the comparison
    zoomed = state["zoomed"]
    assert zoomed["zoom"] != state["slid"]["zoom"]
    # one zoom for all: every panel and the comparison changed together
    assert all(a[0] != b[0] for a, b in zip(zoomed["digests"], state["slid"]["digests"]))
    assert zoomed["compare"] != state["slid"]["compare"]


def test_search_by_class_and_profile_switch(viewer_run):
    state, _ = viewer_run
    picked = state["picked"]
    y_images = [image["id"] for image in state["images"] if image["cls"] == picked]
    assert y_images and state["found"] == [f"{i}  [{picked}]" for i in y_images]
    assert state["count"] == f"{len(y_images)} of {len(state['images'])} test images"
    # the id search narrows within the class: the end of the class's first image id finds it
    assert y_images[0] in state["searched"][0] and 1 <= len(state["searched"]) <= len(y_images)
    present = {image["cls"] for image in state["images"]}
    assert state["classes"] == [""] + sorted(present, key=lambda c: (not c.isdigit(), int(c) if c.isdigit() else c))
    other = state["other"]
    assert other["shown"].startswith("x2_noise|") and other["panels"] == ["LR", "nearest", "bicubic", "HR"]


def test_viewer_screenshot_is_not_blank(report, tmp_path):
    shot = tmp_path / "viewer.png"
    result = chromium(f"--screenshot={shot}", "--window-size=1400,900", "--virtual-time-budget=20000",
                      (report.parent / "viewer.html").resolve().as_uri())
    assert result.returncode == 0 and shot.is_file(), result.stderr[-4000:]
    gray = cv2.cvtColor(cv2.imread(str(shot), cv2.IMREAD_COLOR), cv2.COLOR_BGR2GRAY)
    assert gray.std() > 10 and np.unique(gray).size > 50, "the viewer's screenshot looks blank"
