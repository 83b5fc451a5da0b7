"""Input/output without ROS: the ``Frame`` record, the sequence-folder reader, bags (read and write, the result
bag), raw image buffers (``image_encoding``, also used by the ROS node) and ``poses.json``.

Ground truth and oracle masks of a sequence are read only through the explicitly named
``load_ground_truth`` / ``load_oracle_masks`` / ``oracle_masks`` / ``with_oracle_masks`` (scoring and
"oracle mask" runs); ``DevSequence`` never touches them. May import geometry, models (and errors/checks/config).
"""

from .dev_sequence import (
    DevSequence,
    FrameContacts,
    GroundTruth,
    load_ground_truth,
    load_oracle_masks,
    oracle_masks,
    with_oracle_masks,
)
from .frame import Frame
from .poses_file import POSE_STATUSES, PoseRecord, PosesFile, read_poses, validate_poses, write_poses

__all__ = [
    "POSE_STATUSES",
    "DevSequence",
    "Frame",
    "FrameContacts",
    "GroundTruth",
    "PoseRecord",
    "PosesFile",
    "load_ground_truth",
    "load_oracle_masks",
    "oracle_masks",
    "read_poses",
    "validate_poses",
    "with_oracle_masks",
    "write_poses",
]
