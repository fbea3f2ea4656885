"""One static HTML page of a results directory: every table (its caption, then the table), every figure (the
PNG, then its caption), the notes, and the provenance, written as ``index.html`` beside them.

Why a page of our own beside Snakemake's ``--report``: it is made by ``lisa-bench report`` for any runs (a
study's, or ``train``'s outputs), and by ``lisa-bench page DIR`` for any results directory, committed ones
included, so it needs no Snakemake metadata; it is plain HTML with relative links and no script, so it opens from
the disk in any browser, goes into ``results/<study>/`` with the files it shows, and is read the same by a person
and by the headless-browser test (tests/reporting/test_page.py). Snakemake's report stays the study's archive
of jobs, code and environment.
"""

from __future__ import annotations

import argparse
import html
import json
from pathlib import Path

import pandas as pd

from .. import atomic
from ..errors import BadInput

NO_CAPTION = "(no caption recorded: this figure was drawn before the report wrote captions)"
STYLE = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2.5rem;border-bottom:1px solid #ccc}h3{font-size:1.05rem}
figure{margin:1.5rem 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption,.caption{font-size:.9rem;color:#444;margin:.4rem 0}
table{border-collapse:collapse;font-size:.8rem;margin:.5rem 0 1.5rem;display:block;overflow-x:auto}
th,td{border:1px solid #ddd;padding:.2rem .45rem;text-align:right;white-space:nowrap}th{background:#f4f4f4}
pre{background:#f7f7f7;padding:.6rem;overflow-x:auto;font-size:.8rem}nav a{margin-right:.8rem}"""


def _section_name(part: str) -> str:
    return {"": "Overview", "tables": "Tables", "figures": "Figures"}.get(part, part.replace("_", " ").capitalize())


def _table(csv: Path, md: Path) -> str:
    caption = md.read_text().split("\n\n", 1)[0].strip() if md.is_file() else csv.stem
    df = pd.read_csv(csv).dropna(axis=1, how="all")
    if df.empty:
        return (f'<h3 id="{html.escape(csv.stem)}">{html.escape(csv.stem)}</h3>\n<p class="caption">'
                f"{html.escape(caption)}</p>\n<p><i>(no rows)</i></p>")
    body = df.to_html(index=False, na_rep="", float_format=lambda x: f"{x:.4g}", border=0)
    return f'<h3 id="{html.escape(csv.stem)}">{html.escape(csv.stem)}</h3>\n<p class="caption">{html.escape(caption)}</p>\n{body}'


def _figure(png: Path, root: Path) -> str:
    txt = png.with_suffix(".txt")
    caption = txt.read_text().strip() if txt.is_file() else NO_CAPTION
    rel = png.relative_to(root).as_posix()
    return (f'<figure id="{html.escape(png.stem)}"><img src="{html.escape(rel)}" alt="{html.escape(png.stem)}">'
            f"<figcaption><b>{html.escape(png.stem)}</b>: {html.escape(caption)}</figcaption></figure>")


def _provenance(root: Path) -> str:
    path = root / "provenance.json"
    if not path.is_file():
        return ""
    data = json.loads(path.read_text())
    lines = []
    for key in ("commit", "git_commit", "created", "device"):
        if key in data:
            lines.append(f"<li>{html.escape(key)}: {html.escape(json.dumps(data[key]))}</li>")
    if isinstance(data.get("runs"), (list, dict)):
        lines.append(f"<li>runs: {len(data['runs'])}</li>")
    return ('<h2 id="provenance">Provenance</h2>\n<ul>' + "".join(lines) + "</ul>\n<details><summary>provenance.json"
            f"</summary><pre>{html.escape(json.dumps(data, indent=1)[:200_000])}</pre></details>")


def write_page(root: str | Path, name: str | None = None) -> Path:
    """``root``/index.html from the tables (CSV with their Markdown captions), figures (PNG with the .txt caption
    beside each), notes (other Markdown) and provenance.json under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise BadInput(f"page: {str(root)!r} is not a directory; valid: a results directory (a study's "
                       f"runs/<name>/results, `report --output-dir`, or results/<name>)")
    name = name or root.name
    # the figures: each drawn as PNG and PDF (a screenshot beside them, e.g. page.png, is no figure)
    pngs = sorted(p for p in root.rglob("*.png") if not p.name.startswith(".") and p.with_suffix(".pdf").is_file())
    csvs = sorted(p for p in root.rglob("*.csv") if p.with_suffix(".md").is_file())
    notes = sorted(p for p in root.rglob("*.md") if not p.with_suffix(".csv").is_file() and p.name != "README.md")
    if not (pngs or csvs):
        raise BadInput(f"page: no tables or figures under {str(root)!r}; valid: a directory `lisa-bench report` "
                       f"or a study wrote")
    parts = sorted({p.parent.relative_to(root).as_posix() if p.parent != root else "" for p in [*pngs, *csvs, *notes]},
                   key=lambda s: ({"tables": 0, "figures": 1, "": 2}.get(s, 3), s))
    sections = []
    for part in parts:
        here = root / part if part else root
        body = [_table(c, c.with_suffix(".md")) for c in csvs if c.parent == here]
        body += [_figure(p, root) for p in pngs if p.parent == here]
        body += [f'<h3>{html.escape(n.stem)}</h3><pre>{html.escape(n.read_text())}</pre>' for n in notes
                 if n.parent == here]
        anchor = part.replace("/", "-") or "overview"
        sections.append((anchor, _section_name(part), "\n".join(body)))
    nav = " ".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t, _ in sections)
    page = (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>lisa-bench: {html.escape(name)}'
            f"</title>\n<style>{STYLE}</style></head><body>\n<h1>lisa-bench results: {html.escape(name)}</h1>\n"
            f"<p>{len(csvs)} tables and {len(pngs)} figures from <code>{html.escape(str(root))}</code>; each figure's "
            f"PDF and each table's CSV, Markdown and LaTeX lie beside it.</p>\n<nav>{nav}</nav>\n"
            + "\n".join(f'<h2 id="{a}">{html.escape(t)}</h2>\n{b}' for a, t, b in sections)
            + "\n" + _provenance(root) + "\n</body></html>\n")
    out = root / "index.html"
    atomic.write_text(out, page)
    return out


def add_parser(sub) -> None:
    p = sub.add_parser("page", help="one HTML page of a results directory's tables, figures and captions",
                       description="Write DIR/index.html: every table, figure (with its caption) and note under DIR, "
                                   "and its provenance; `report` writes it too.")
    p.add_argument("directory", help="a results directory (runs/<study>/results, report --output-dir, results/<name>)")
    p.add_argument("--name", help="the page's title (default: the directory's name)")
    p.set_defaults(func=_cmd_page)


def _cmd_page(args: argparse.Namespace) -> int:
    out = write_page(args.directory, args.name)
    print(f"page: {out}")
    return 0
