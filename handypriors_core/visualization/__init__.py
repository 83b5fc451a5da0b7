"""Images for people: overlays of the estimate on the camera image (:mod:`.overlay`) and overlay videos
(:mod:`.video`). Numpy / OpenCV drawing only: imports ``errors`` and nothing else of the core (callers render
and project; this package draws), never rclpy.
"""
