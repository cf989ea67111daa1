"""The wheel the image installs (`pip install .` of what deploy/Dockerfile copies, not the
editable install the tests use) carries the journey page's assets, which are data files."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_the_wheel_carries_the_page_assets(tmp_path: Path) -> None:
    source = tmp_path / "src"
    # The build stage's COPY lines, as the image builds it.
    build_stage = (ROOT / "deploy/Dockerfile").read_text().split("\nFROM ")[1]
    for line in re.findall(r"^COPY (?!--from)(.+)$", build_stage, re.MULTILINE):
        *paths, _ = line.split()
        for path in paths:
            if (ROOT / path).is_dir():
                shutil.copytree(ROOT / path, source / path, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                source.mkdir(parents=True, exist_ok=True)
                shutil.copy(ROOT / path, source / path)
    wheels = tmp_path / "wheels"
    command = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--quiet",
        "--no-deps",
        "--wheel-dir",
        str(wheels),
        str(source),
    ]
    built = subprocess.run(command, capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = wheels.glob("journey-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assets = {p.relative_to(ROOT).as_posix() for p in (ROOT / "stream/serving/web/assets").iterdir()}
    assert assets and assets <= names, assets - names
