"""HandyPriors core: differentiable rendering and physics priors for hand-object pose estimation.

Pure library (torch, numpy, warp-lang); never imports rclpy or ``handypriors_ros``. Layers, from the bottom up
(``docs/DEVELOPING.md``; ``test/test_import_layers.py`` enforces them): errors/checks/config -> geometry ->
models, render, physics, priors, metrics, visualization -> io -> estimation -> segmentation, synthetic,
evaluation -> app -> cli.
"""

__version__ = "0.1.0"
