"""HandyPriors core: differentiable rendering and physics priors for hand-object pose estimation.

Pure library (torch, numpy, warp-lang); never imports rclpy. Sub-packages, from the bottom up:
geometry -> models -> render / physics -> priors -> estimation -> segmentation, metrics, io, synthetic.
"""

__version__ = "0.1.0"
