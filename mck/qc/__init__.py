"""Quality control from the files the pipeline wrote: numbers (``metrics``), matplotlib figures (``plots``) and
overlay-video frames (``overlay``). Pure functions of arrays; nothing here reads files or recomputes the pipeline.

Array conventions (as everywhere in mck): 2D ``(frames, cameras, keypoints, 2)`` px, confidences
``(frames, cameras, keypoints)``, 3D ``(frames, keypoints, 3)`` mm, missing = NaN.
"""
