"""2D detection: CenterNet (animal centroid) and HRNet (15 keypoints), pure torch/numpy/OpenCV.

Modules: ``centernet`` / ``hrnet`` (architectures whose state dicts match the lab's files key for key),
``load`` (strict loading), ``preprocess`` (batched CLAHE, subsample, crop), ``postprocess`` (heatmap parsing),
``infer`` (batched video inference), ``labels`` (Scale-AI labels, docs/algorithms.md §D.3), ``train`` (§D.4/§D.5).
No Hydra, omegaconf or h5py here: file writing lives in ``mck.steps``.
"""
from mck.detection.centernet import ConvNet
from mck.detection.hrnet import HRNet
from mck.detection.load import load_centernet, load_hrnet

__all__ = ["ConvNet", "HRNet", "load_centernet", "load_hrnet"]
