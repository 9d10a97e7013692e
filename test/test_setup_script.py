"""tools/setup.sh fails loudly, naming the step, and never marks a broken set-up as ready."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow  # node processes over DDS, or a build: see docs/development.md

INPUTS = (
    "tools/setup.sh",
    "constraints.txt",
    "requirements-core.txt",
    "setup.py",
    "package.xml",
    "CMakeLists.txt",
    "msg/TactileArray.msg",
    "msg/RefinementDiagnostics.msg",
)


def test_a_failing_step_stops_the_setup_with_its_name(tmp_path):
    for name in INPUTS:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    (tmp_path / "requirements.txt").write_text("tactile-pose-refiner-no-such-wheel==0.0.1\n")
    result = subprocess.run(
        ["bash", str(tmp_path / "tools" / "setup.sh")], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert result.returncode != 0
    assert "[setup] FAILED at step: install pinned wheels" in result.stderr
    assert "tactile-pose-refiner-no-such-wheel" in result.stderr  # pip's reason is shown
    assert not (tmp_path / ".venv" / ".tpr-setup-stamp").exists()


def test_an_up_to_date_environment_is_not_rebuilt():
    result = subprocess.run(["bash", str(REPO / "tools" / "setup.sh")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and "[setup]" not in result.stderr
