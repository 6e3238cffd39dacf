"""Start-up stays light: the command line and napari's reader sniff import no heavy library."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from napari_grounding.sample_cxr import write_chexmask_sample

HEAVY = ("ome_zarr", "zarr", "dask.array", "distributed", "pandas", "pyarrow", "skimage", "PIL",
         "imageio")
ROOT = Path(__file__).resolve().parents[1]


def _imported_after(code: str) -> list[str]:
    """The heavy modules a fresh interpreter holds after running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
                          check=True)
    modules = set(json.loads(done.stdout.splitlines()[-1]))
    return [m for m in HEAVY if m in modules]


def test_command_line_imports_no_heavy_library():
    assert _imported_after("import napari_grounding, napari_grounding.cli") == []


def test_help_imports_no_heavy_library():
    code = ("import contextlib, io\nfrom napari_grounding.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            "    main(['--help'])")
    assert _imported_after(code) == []


@pytest.mark.parametrize("kind", ["csv", "folder", "ct-folder"])
def test_reader_sniff_imports_no_heavy_library(tmp_path, sample_root, kind):
    if kind == "csv":
        path = write_chexmask_sample(tmp_path / "cxr")
    elif kind == "folder":
        path = tmp_path
    else:
        path = sample_root
    code = (f"from napari_grounding._reader import napari_get_reader\n"
            f"from napari_grounding.readers import can_read\n"
            f"assert can_read({str(path)!r}) == {kind != 'folder'}\n"
            f"napari_get_reader({str(path)!r})")
    assert _imported_after(code) == []


@pytest.mark.parametrize("json_out", [False, True])
def test_describe_of_a_ct_case_builds_no_dask_graph(sample_root, json_out):
    """``describe`` reads headers, and (``--json``) measures each mask file in one forward
    pass: dask.array's import (0.3-0.7 s, with scipy) is not paid."""
    argv = ["describe", str(sample_root), *(["--json"] if json_out else [])]
    code = ("import contextlib, io\nfrom napari_grounding.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            f"    assert main({argv!r}) in (0, None)\n"
            "assert 'mask/2' in out.getvalue()")
    with_nibabel = _imported_after("import nibabel.nifti1")  # PIL, through pydicom
    assert set(_imported_after(code)) - set(with_nibabel) == set()


def test_opening_a_case_and_measuring_it_imports_no_distributed(sample_root):
    """dask looks for a distributed client (importing it: 0.3-0.8 s) on every compute given
    a scheduler by name or none; ours, and the viewer's slicing, name none of that."""
    code = (f"import numpy as np\nfrom napari_grounding.readers import open_case\n"
            f"from napari_grounding.metrics import case_stats\n"
            f"from napari_grounding.batch import _limited\n"
            f"case = open_case({str(sample_root)!r})\ncase_stats(case)\n"
            f"with _limited(1):\n    np.asarray(case.images['ct'].data[3])\n"
            f"with _limited(2):\n    np.asarray(case.images['ct'].data[4])")
    assert "distributed" not in _imported_after(code)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_local_job_imports_no_distributed(tmp_path, workers):
    """A job on local threads or processes pays no import of distributed."""
    path = write_chexmask_sample(tmp_path / "cxr")
    code = (f"from napari_grounding import batch\n"
            f"ids = batch._dataset({str(path)!r}, None).case_ids()\n"
            f"assert len(batch.run(batch.qc_one, {str(path)!r}, None, ids, workers={workers}))"
            f" == len(ids)")
    assert "distributed" not in _imported_after(code)
