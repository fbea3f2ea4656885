"""`lisa-bench reproduce` runs a study's pipeline (what `make reproduce` runs); the real run is exercised by
test_pipeline.py::test_tiny_pipeline_end_to_end. Here: its bad input."""

from lisa_bench.cli import main


def test_reproduce_needs_the_project_directory(tmp_path, capsys):
    assert main(["reproduce", "--directory", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no Snakefile in" in err and len(err.strip().splitlines()) == 1


def test_reproduce_rejects_unknown_study(tmp_path, capsys):
    (tmp_path / "Snakefile").write_text("")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "default.yaml").write_text("name: default\n")
    assert main(["reproduce", "--directory", str(tmp_path), "--configfile", "config/nope.yaml"]) == 2
    err = capsys.readouterr().err
    assert "unknown study 'config/nope.yaml'; valid choices: config/default.yaml" in err
