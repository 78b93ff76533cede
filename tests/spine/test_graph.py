"""The declared step graph (issue #18): order derived from inputs, one dependency function across levels, variant
tags that flow downstream, explicit files that cut an edge, experiments and per-step overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mck.errors import ConfigError
from mck.graph import ItemRef, Items, Need, assemble, build_graph, effective_step, needs, tagged
from mck.inventory import Settings, scan
from tests.conftest import make_project


def test_tagged_names():
    assert tagged("keypoints.h5", ["v2"]) == "keypoints.v2.h5"
    assert tagged("keypoints.h5", []) == "keypoints.h5"
    assert tagged("nwb", ["v2"]) == "v2.nwb"
    assert tagged("report/index.html", ["a", "b"]) == "report/index.a.b.html"


def test_order_is_derived_from_the_inputs():
    graph = build_graph()
    order = graph.order
    for name in order:
        for producer in graph.node(name).producers:
            assert order.index(producer) < order.index(name), (producer, name)
    assert order.index("train_hrnet") < order.index("hrnet") < order.index("triangulation") < order.index("gimbal")
    assert graph.upstream(["triangulation"]) == ["probe", "calibration", "train_centernet", "train_hrnet",
                                                  "centernet", "hrnet", "refine_calibration", "sync_check",
                                                  "triangulation"]   # the last two: optional inputs (issue 21)


def test_variant_tags_flow_downstream_only():
    graph = build_graph(variants={"hrnet": "v2"})
    assert graph.node("hrnet").output_name == "keypoints.v2.h5"
    assert graph.node("triangulation").outputs == ["robust_triangulation.v2.npy", "triangulation.v2.h5"]
    assert graph.node("gimbal").output_name == "gimbal.v2.npy"
    assert graph.node("fit_gimbal").output_name == "gimbal_params.v2.p"   # fitted to the v2 detector
    assert graph.node("qc").output_name == "qc.v2.json"
    assert graph.node("centernet").output_name == "centroid.npy"           # upstream: untouched
    assert graph.node("report").output_name == "report/index.html"         # pins the default QC variant
    with pytest.raises(ConfigError, match="no step named 'hrnett'"):
        build_graph(variants={"hrnett": "v2"})


def test_experiment_overrides_apply_unless_the_command_line_changed_the_key():
    root = {"steps": {"hrnet": {"func_kwargs": {"crop_size": 192, "batch_size": 8}}}}
    assert effective_step("hrnet", root)["func_kwargs"]["crop_size"] == 192
    current = OmegaConf.create(effective_step("hrnet", None))
    current.func_kwargs.batch_size = 64          # typed on the command line
    merged = effective_step("hrnet", root, current)
    assert merged["func_kwargs"] == {**merged["func_kwargs"], "crop_size": 192, "batch_size": 64}


@pytest.fixture(scope="module")
def items(tmp_path_factory) -> Items:
    root = make_project(tmp_path_factory.mktemp("graph") / "data", frames=2)
    return Items(scan(Settings(data_root=str(root), output_root=str(root))), "demo")


def test_needs_relate_items_across_levels(items: Items):
    graph = build_graph()
    session = items.ref("session", "20240422_J04301")
    video = items.ref("video", "20240422_J04301.top")
    calib = items.ref("calibration", "20240422_calibration")
    project = ItemRef("project", "demo")
    kp = needs("session", session, graph.node("hrnet"), items)
    assert [n.key for n in kp] == [(c,) for c in ("top", "side1", "side2", "side3", "side4", "bottom")]
    assert kp[0].item == "20240422_J04301.top"
    assert [n.item for n in needs("session", session, graph.node("calibration"), items)] == ["20240422_calibration"]
    assert [n.item for n in needs("video", video, graph.node("centernet"), items)] == ["20240422_J04301.top"]
    tri = needs("project", project, graph.node("triangulation"), items)
    assert [n.key for n in tri] == [("20240422_J04301",), ("20240422_J04302",)]
    assert [n.item for n in needs("project", project, graph.node("triangulation"), items,
                                  only=["20240422_J04302"])] == ["20240422_J04302"]
    cal = needs("project", project, graph.node("calibration"), items)
    assert {n.key: n.item for n in cal} == {("20240422_J04301",): "20240422_calibration",
                                           ("20240422_J04302",): "20240422_calibration"}
    by_cal = needs("calibration", calib, graph.node("hrnet"), items)
    assert len(by_cal) == 12 and by_cal[0].key == ("20240422_J04301", "top")
    assert needs("session", session, graph.node("fit_gimbal"), items) == [Need("fit_gimbal", "demo", "")]


def test_assemble_builds_the_bound_value():
    assert assemble([((), "/a")]) == "/a"
    assert assemble([(("top",), "/t"), (("side1",), "/s")]) == {"top": "/t", "side1": "/s"}
    assert assemble([(("S", "top"), "/t")]) == {"S": {"top": "/t"}}


def test_session_without_calibration_names_the_fix(tmp_path: Path):
    root = make_project(tmp_path / "data", sessions=("20240501_X",), frames=2, calibration=None)
    items = Items(scan(Settings(data_root=str(root), output_root=str(root))), "demo")
    with pytest.raises(ConfigError, match="no calibration for date 20240501"):
        needs("session", items.ref("session", "20240501_X"), build_graph().node("calibration"), items)
