"""The committed generated code (hypr_engine/api/_pb) is exactly what proto/generate.sh
makes from proto/hypr/v1/*.proto: regenerate into a temporary directory and compare."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


def test_generated_code_matches_the_proto_files(tmp_path):
    out = tmp_path / "pkg" / "_pb"
    proc = subprocess.run([str(ROOT / "proto/generate.sh"), str(out)], capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    fresh, committed = _files(out), _files(ROOT / "hypr_engine/api/_pb")
    assert sorted(fresh) == sorted(committed), "generated files differ in name: run proto/generate.sh"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"hypr_engine/api/_pb is stale ({stale}): run proto/generate.sh and commit the result"
