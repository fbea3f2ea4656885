"""Every committed study (config/*.yaml) passes its checks and plans its jobs (a Snakemake dry run)."""

import pytest

from tests.pipeline_support import ROOT, snakemake

# the default study is dry-run in a fresh clone, with every stage checked, by test_reproduce.py
CONFIGS = sorted(p.name for p in (ROOT / "config").glob("*.yaml") if p.name not in ("schema.yaml", "default.yaml"))


@pytest.mark.parametrize("config", CONFIGS)
def test_dry_run(config, workdir):
    proc = snakemake(workdir, "-n", "--cores", "2", "--configfile", f"config/{config}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "total" in proc.stdout
