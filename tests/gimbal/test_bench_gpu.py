"""benchmarks/gpu.py runs end to end in --smoke mode (no GPU needed) and prints its table."""

import pytest


@pytest.mark.slow
def test_gpu_benchmark_smoke(capsys):
    from benchmarks import gpu

    gpu.main(["--smoke"])
    out = capsys.readouterr().out
    for row in ("CenterNet", "HRNet", "video decode", "GIMBAL 1000 frames", "float32", "float64"):
        assert row in out
    assert "total" in out


def test_table_formatting():
    from benchmarks.gpu import format_table

    table = format_table([("HRNet", "frames/s", 2.0, 10.0, "n"), ("GIMBAL", "s/iteration", None, 0.5, "x")])
    lines = table.splitlines()
    assert lines[0].startswith("measurement") and "5.0" in lines[1] and lines[2].split()[-2] == "0.5"
