"""Export round trips: NWB (ndx-pose) read back with pynwb, and the keypoint-moseq file read the way
keypoint_moseq.io._nwb_loader reads it (keypoint-moseq itself is not installed: it pulls ~130 packages)."""

from __future__ import annotations

import numpy as np
import pytest

from mck.skeleton import KEYPOINT_NAMES, MOUSE
from tests.qc.helpers import CAMERAS, session_outputs

pytest.importorskip("pynwb")
pytest.importorskip("ndx_pose")


def kpms_nwb_loader(filepath, name):
    """keypoint-moseq's NWB loader (keypoint_moseq/io.py ``_nwb_loader`` + ``_load_nwb_pose_obj``), restated."""
    from ndx_pose import PoseEstimation
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(filepath, mode="r", load_namespaces=True) as io:
        pose_objs = [o for o in io.read().all_children() if isinstance(o, PoseEstimation)]
        assert len(pose_objs) == 1, f"found {len(pose_objs)} PoseEstimation objects"
        pose_obj = pose_objs[0]
        bodyparts = list(pose_obj.nodes[:])
        coords = np.stack([pose_obj.pose_estimation_series[bp].data[()] for bp in bodyparts], axis=1)
        if "confidence" in pose_obj.pose_estimation_series[bodyparts[0]].fields:
            confs = np.stack([pose_obj.pose_estimation_series[bp].confidence[()] for bp in bodyparts], axis=1)
        else:
            confs = np.ones_like(coords[..., 0])
        return {name: coords}, {name: confs}, bodyparts


@pytest.mark.parametrize("gimbal", [False, True])
def test_nwb_and_kpms_round_trip(tmp_path, gimbal):
    import h5py
    from pynwb import NWBHDF5IO

    from mck.steps import export

    o = session_outputs(tmp_path, "20240422_J04301", frames=7, gimbal=gimbal)
    out = tmp_path / "20240422_J04301.nwb"
    m = export.run("20240422_J04301", o["keypoints"], str(tmp_path / "20240422_J04301.robust_triangulation.npy"),
                   o["calibration"], str(out), output_paths=[str(out), str(out).replace(".nwb", ".kpms.nwb")],
                   gimbal_path=str(tmp_path / "20240422_J04301.gimbal.npy"), fps=30.0)
    with NWBHDF5IO(str(out), "r", load_namespaces=True) as io:
        nwb = io.read()
        behavior = nwb.processing["behavior"]
        assert set(nwb.devices) == set(CAMERAS)
        assert np.allclose(nwb.devices["side1"].intrinsic_matrix[:], o["intr"][1][0])
        for c, cam in enumerate(CAMERAS):
            pe = behavior[f"PoseEstimation2D_{cam}"]
            assert list(pe.nodes[:]) == list(KEYPOINT_NAMES)
            with h5py.File(o["keypoints"][cam]) as f:
                uv, conf = f["uv"][()], f["conf"][()]
            for k, name in enumerate(KEYPOINT_NAMES):
                s = pe.pose_estimation_series[name]
                assert np.allclose(s.data[:], uv[:, k]) and np.allclose(s.confidence[:], conf[:, k])
                assert s.rate == 30.0 and s.unit == "pixels"
        tri = behavior["PoseEstimation3D_triangulation"]
        got = np.stack([tri.pose_estimation_series[n].data[:] for n in KEYPOINT_NAMES], axis=1)
        assert np.allclose(got, o["points"])
        assert ("PoseEstimation3D_gimbal" in behavior.data_interfaces) == gimbal
    coords, confs, bodyparts = kpms_nwb_loader(m["kpms"], "s")
    if gimbal:
        assert bodyparts == list(MOUSE.names)
        idx = [KEYPOINT_NAMES.index(n) for n in MOUSE.names]
        assert np.allclose(coords["s"], o["points"][:, idx], atol=1e-4)  # gimbal.npy is float32
    else:
        assert bodyparts == list(KEYPOINT_NAMES)
        assert np.allclose(coords["s"], o["points"])
    assert coords["s"].shape == (7, len(bodyparts), 3)
    assert confs["s"].shape == (7, len(bodyparts)) and (confs["s"] > 0.3).all() and (confs["s"] <= 1).all()


def test_export_without_triangulation_is_an_input_error(tmp_path):
    from mck.errors import InputError
    from mck.steps import export

    o = session_outputs(tmp_path, "S", frames=3, triangulation=False, gimbal=False)
    with pytest.raises(InputError, match="step=triangulation"):
        export.run("S", o["keypoints"], str(tmp_path / "S.robust_triangulation.npy"), o["calibration"],
                   str(tmp_path / "S.nwb"), gimbal_path=str(tmp_path / "S.gimbal.npy"), fps=30.0)
