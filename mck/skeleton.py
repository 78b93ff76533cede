"""The mouse skeleton as data: keypoint names (HRNet order), edges, and GIMBAL's node hierarchy.

Nothing else in mck hard-codes the mouse: cores take ``parents`` / names from here or from a parameter file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The 15 keypoints in the order of the HRNet heatmaps, the labels and every ``keypoints.h5`` (docs/algorithms.md §D.2).
KEYPOINT_NAMES: tuple[str, ...] = (
    "tail_tip", "tail_base", "spine_low", "spine_mid", "spine_high", "left_ear", "right_ear", "forehead", "nose_tip",
    "left_hind_paw_front", "left_hind_paw_back", "right_hind_paw_front", "right_hind_paw_back", "left_fore_paw",
    "right_fore_paw",
)

#: Skeleton edges by name, in the lab's order (docs/algorithms.md §C.1). ``tail_tip`` is not part of GIMBAL's skeleton.
EDGES: tuple[tuple[str, str], ...] = (
    ("tail_base", "spine_low"), ("spine_low", "spine_mid"), ("spine_mid", "spine_high"), ("spine_high", "left_ear"),
    ("spine_high", "right_ear"), ("spine_high", "forehead"), ("forehead", "nose_tip"),
    ("left_hind_paw_back", "left_hind_paw_front"), ("spine_low", "left_hind_paw_back"),
    ("right_hind_paw_back", "right_hind_paw_front"), ("spine_low", "right_hind_paw_back"),
    ("spine_high", "left_fore_paw"), ("spine_high", "right_fore_paw"),
)

#: Keypoints GIMBAL uses (HRNet order without tail_tip).
USE_BODYPARTS: tuple[str, ...] = KEYPOINT_NAMES[1:]
ROOT = "spine_low"


@dataclass(frozen=True)
class NodeHierarchy:
    """``node_order[k]`` indexes ``bodyparts``; ``parents[k]`` is the parent's position in node order
    (``parents[0] == 0``); parents precede children. ``edges`` are in node indices."""

    bodyparts: tuple[str, ...]
    node_order: np.ndarray
    parents: np.ndarray
    edges: np.ndarray

    @property
    def names(self) -> tuple[str, ...]:
        """Keypoint names in node order."""
        return tuple(self.bodyparts[i] for i in self.node_order)


def build_node_hierarchy(bodyparts=USE_BODYPARTS, edges=EDGES, root: str = ROOT) -> NodeHierarchy:
    """Depth-first pre-order from ``root``, neighbours visited in edge insertion order (docs/algorithms.md §C.1).

    Raises ValueError if the edges do not form a tree over ``bodyparts``.
    """
    bodyparts = tuple(bodyparts)
    index = {name: i for i, name in enumerate(bodyparts)}
    adjacency: dict[int, list[int]] = {i: [] for i in range(len(bodyparts))}
    for a, b in edges:
        if a not in index or b not in index:
            raise ValueError(f"edge ({a}, {b}) names a keypoint that is not in bodyparts")
        adjacency[index[a]].append(index[b])
        adjacency[index[b]].append(index[a])
    if len(edges) != len(bodyparts) - 1:
        raise ValueError(f"skeleton is not a tree: {len(edges)} edges for {len(bodyparts)} keypoints")
    order: list[int] = []
    parent_of: dict[int, int] = {index[root]: index[root]}
    stack = [index[root]]
    while stack:
        node = stack.pop()
        if node in order:
            continue
        order.append(node)
        for neighbour in reversed(adjacency[node]):
            if neighbour not in parent_of:
                parent_of[neighbour] = node
                stack.append(neighbour)
    if len(order) != len(bodyparts):
        raise ValueError("skeleton is not connected")
    position = {node: k for k, node in enumerate(order)}
    parents = np.array([position[parent_of[node]] for node in order])
    edge_idx = np.array([[position[index[a]], position[index[b]]] for a, b in edges])
    return NodeHierarchy(bodyparts, np.array(order), parents, edge_idx)


MOUSE = build_node_hierarchy()


# ----------------------------------------------------------------------------------------------- keypoint orders
def to_node_order(keypoints15):
    """``(..., 15, D)`` in HRNet order → ``(..., 14, D)`` in GIMBAL node order (tail_tip dropped)."""
    return keypoints15[..., MOUSE.node_order + 1, :]


def per_camera_node_order(values):
    """Per-detection values ``(T, C, 15)`` in HRNet order → ``(C, T, 14)`` in node order."""
    return np.moveaxis(to_node_order(values[..., None])[..., 0], 1, 0)


def gimbal_to_hrnet(gimbal):
    """GIMBAL output ``(T, 14, 3)`` in node order → ``(T, 15, 3)`` HRNet order (tail_tip NaN)."""
    out = np.full((gimbal.shape[0], len(KEYPOINT_NAMES), 3), np.nan)
    hrnet_index = [KEYPOINT_NAMES.index(MOUSE.bodyparts[i]) for i in MOUSE.node_order]
    out[:, hrnet_index] = gimbal
    return out
