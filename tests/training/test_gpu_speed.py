"""scripts/gpu_speed.py, the device speed check (issue 31): its CPU dry run takes the same code path."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_device_speed_check_dry_run(tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_speed", ROOT / "scripts" / "gpu_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--out", str(tmp_path), "--dry-run"]) == 0
    rows = json.loads((tmp_path / "speed.json").read_text())["rows"]
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    assert [r["precision"] for r in rows] == ["fp32", "bf16", "bf16-master", "bf16-sr"]
    for r in rows:
        for kind in ("loop", "bare", "loop_dataset"):
            assert r[f"{kind}_tokens_per_second"] > 0 and len(r[f"{kind}_seconds"]) == 4, (r["experiment"], kind)
        # the Trainer where it runs the method as it is (not LISA); the loop and the Trainer compute the same step
        assert ("trainer_tokens_per_second" in r) == (r["experiment"] != "lisa-e-h-2l" and r["precision"] in ("fp32", "bf16"))
        assert r["loop_mfu"] is None  # no datasheet peak for a CPU
    assert "loop_over_bare" in (tmp_path / "speed.md").read_text()
