"""The results page (lisa_bench/reporting/page.py): `report` writes index.html with every table, figure and caption
of its output directory, and a real browser (Debian's headless Chromium) shows every image loaded and every
caption in place."""

import html
import json
import re
import shutil
import subprocess

import pytest

from lisa_bench.cli import main
from lisa_bench.reporting.page import NO_CAPTION, write_page
from tests.pipeline_support import ROOT
from tests.reporting.test_report import _tree

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# a page beside the results page that reads it as the browser rendered it: each image loaded (decoded, with a
# width) or not, each figure's caption, the tables (file:// pages read each other under --allow-file-access-from-files)
HARNESS = """<!doctype html><html><body><iframe id="f" src="index.html" width="1200" height="800"></iframe><script>
document.getElementById('f').onload = () => {
  const d = document.getElementById('f').contentDocument;
  const result = {
    images: [...d.images].map(i => ({src: i.getAttribute('src'), loaded: i.complete && i.naturalWidth > 0})),
    captions: [...d.querySelectorAll('figure')].map(f => (f.querySelector('figcaption') || {}).textContent || ''),
    tables: [...d.querySelectorAll('table')].map(t => t.rows.length),
    title: d.title,
  };
  const out = document.createElement('pre'); out.id = 'result'; out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
};
</script></body></html>"""


@pytest.fixture
def report_dir(tmp_path, capsys):
    _tree(tmp_path / "runs")
    out = tmp_path / "out"
    assert main(["report", "--runs-dir", str(tmp_path / "runs"), "--output-dir", str(out), "--name", "tiny"]) == 0
    assert f"page: {out / 'index.html'}" in capsys.readouterr().out
    return out


def test_report_writes_a_page_of_every_table_figure_and_caption(report_dir):
    page = (report_dir / "index.html").read_text()
    pngs = sorted(report_dir.rglob("*.png"))
    assert len(pngs) >= 3
    for png in pngs:
        assert f'src="{png.relative_to(report_dir).as_posix()}"' in page
        assert html.escape(png.with_suffix(".txt").read_text().strip()) in page  # its caption, beside it
    for md in report_dir.rglob("*.md"):
        if md.with_suffix(".csv").exists():
            assert html.escape(md.read_text().split("\n\n")[0].strip()) in page  # each table's caption
    assert "<script" not in page  # plain HTML: opens from the disk anywhere


def test_a_directory_without_captions_says_so_and_bad_input_is_one_line(tmp_path, capsys):
    (tmp_path / "figures").mkdir()
    for suffix in (".png", ".pdf"):  # a figure committed before captions: no .txt beside it
        shutil.copy(ROOT / "results" / "default" / "figures" / f"loss_curves{suffix}", tmp_path / "figures" / f"old{suffix}")
    (tmp_path / "figures" / "page.png").write_bytes(b"")  # a screenshot (no PDF beside it) is no figure
    page = write_page(tmp_path).read_text()
    assert NO_CAPTION in page and 'src="figures/old.png"' in page and "page.png" not in page
    assert main(["page", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a directory" in err[0]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_the_page_in_headless_chromium(report_dir, tmp_path):
    """Every image loads and every figure has its caption as a reader's browser shows the page; a screenshot
    is taken as a person would see it."""
    (report_dir / "harness.html").write_text(HARNESS)
    common = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files"]
    proc = subprocess.run([*common, "--virtual-time-budget=10000", "--dump-dom",
                           (report_dir / "harness.html").as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="result">(.*?)</pre>', proc.stdout, re.S)
    assert found, proc.stderr[-2000:]
    seen = json.loads(html.unescape(found[1]))
    pngs = sorted(p.relative_to(report_dir).as_posix() for p in report_dir.rglob("*.png"))
    assert sorted(i["src"] for i in seen["images"]) == pngs
    assert all(i["loaded"] for i in seen["images"]), seen["images"]
    captions = {p.stem: p.with_suffix(".txt").read_text().strip() for p in report_dir.rglob("*.png")}
    assert len(seen["captions"]) == len(captions)
    for stem, caption in captions.items():
        assert any(c.startswith(f"{stem}: ") and caption in c for c in seen["captions"]), stem
    import pandas as pd

    filled = [c for c in report_dir.rglob("*.csv") if c.with_suffix(".md").exists() and len(pd.read_csv(c))]
    assert len(seen["tables"]) == len(filled) and all(rows > 1 for rows in seen["tables"])  # empty ones say so
    assert seen["title"] == "lisa-bench: tiny"
    shot = tmp_path / "page.png"
    subprocess.run([*common, "--hide-scrollbars", f"--screenshot={shot}", "--window-size=1100,1600",
                    (report_dir / "index.html").as_uri()], capture_output=True, timeout=120)
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
