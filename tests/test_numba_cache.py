"""The on-disk numba cache is keyed by the whole package's sources (cascade._numba): a kernel
compiled against an older state layout is never loaded after another module changed."""

from __future__ import annotations

import os
import subprocess
import sys

from cascade._numba import _source_stamp


def test_stamp_changes_with_any_module(tmp_path):
    (tmp_path / "engine").mkdir()
    kernel = tmp_path / "engine" / "loop.py"
    layout = tmp_path / "engine" / "layout.py"
    kernel.write_text("X = 1\n")
    layout.write_text("J_XL = 17\n")
    first = _source_stamp(tmp_path)
    assert _source_stamp(tmp_path) == first
    layout.write_text("J_XL = 15\n")  # same size, another module than the kernel's
    os.utime(layout, ns=(1, 1))
    assert _source_stamp(tmp_path) != first


def _cache_dir(env):
    code = "import cascade._numba, numba; print(numba.config.CACHE_DIR)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    return out.stdout.strip()


def test_cache_dir_is_stamped_unless_the_user_chose(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    got = _cache_dir(env)
    assert os.path.basename(got).startswith("numba-") and os.path.isdir(got)
    assert _cache_dir({**env, "NUMBA_CACHE_DIR": str(tmp_path)}) == str(tmp_path)
