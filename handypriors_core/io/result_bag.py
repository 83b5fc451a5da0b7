"""The result bag of ``handypriors track --out-bag``: the input recording plus the tracker's outputs.

Every input topic is copied as recorded; :data:`POSE_TOPIC`, :data:`CONTACTS_TOPIC`, :data:`OVERLAY_TOPIC` and
``/tf`` (camera -> object) are added per tracked image, so the run replays in RViz or Foxglove. MCAP storage
(rosbags' writer), one ``.mcap`` file or a rosbag2 folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import defaults

__all__ = ["CONTACTS_TOPIC", "OVERLAY_TOPIC", "POSE_TOPIC", "ResultBag"]

#: Topics the result bag adds (besides ``/tf``): the live node's, so a result bag replays like a recording of it.
POSE_TOPIC = defaults.resolve_private(defaults.TOPICS["object_pose"])
CONTACTS_TOPIC = defaults.resolve_private(defaults.TOPICS["contacts"])
OVERLAY_TOPIC = defaults.resolve_private(defaults.TOPICS["overlay"])


class ResultBag:
    """Writes the result bag: every input topic copied, plus ``/tf`` (camera -> object), the pose with covariance,
    contact markers (+ the object mesh) and overlay images, so the run replays in RViz or Foxglove.

    Args:
        path: ``.mcap`` file, or a folder name for a rosbag2 folder (replaced when it exists).
        typestore: the input bag's rosbags typestore (message types of the copied topics).
        camera_frame: frame id of the results (the images' optical frame); object_frame: child frame id.
        object_mesh: the object mesh file (referenced by the mesh marker).
    """

    def __init__(self, path: Path, typestore, camera_frame: str, object_frame: str, object_mesh: Path) -> None:
        import shutil
        import tempfile

        from rosbags.rosbag2 import StoragePlugin, Writer

        self.camera_frame = camera_frame
        self.object_frame = object_frame
        self.ts = typestore
        out = Path(path)
        self.single_file = out.suffix == ".mcap"
        if out.exists():
            if out.is_dir():
                shutil.rmtree(out)
            else:
                out.unlink()
        out.parent.mkdir(parents=True, exist_ok=True)
        self.final = out
        if self.single_file:
            self.tmp = Path(tempfile.mkdtemp(prefix=".handypriors_bag_", dir=out.parent))
            self.target = self.tmp / "bag"
        else:
            self.tmp, self.target = None, out
        self.writer = Writer(self.target, version=8, storage_plugin=StoragePlugin.MCAP)
        self.writer.open()
        self.out_conns: dict[int, Any] = {}
        self.tf_conn = None
        self.pose_conn = self.writer.add_connection(POSE_TOPIC, "geometry_msgs/msg/PoseWithCovarianceStamped",
                                                    typestore=self.ts)
        self.marker_conn = self.writer.add_connection(CONTACTS_TOPIC, "visualization_msgs/msg/MarkerArray",
                                                      typestore=self.ts)
        self.overlay_conn = self.writer.add_connection(OVERLAY_TOPIC, "sensor_msgs/msg/Image", typestore=self.ts)
        self.mesh_uri = "file://" + str(Path(object_mesh).resolve())

    def _out_conn(self, conn):
        out = self.out_conns.get(conn.id)
        if out is not None:
            return out
        qos = list(getattr(conn.ext, "offered_qos_profiles", []) or [])
        fmt = getattr(conn.ext, "serialization_format", "cdr")
        for existing in self.writer.connections:
            if existing.topic == conn.topic and existing.msgtype == conn.msgtype:
                out = existing
                break
        else:
            if conn.msgtype in self.ts.types:
                out = self.writer.add_connection(conn.topic, conn.msgtype, typestore=self.ts, serialization_format=fmt,
                                                 offered_qos_profiles=qos)
            else:
                out = self.writer.add_connection(conn.topic, conn.msgtype, msgdef=conn.msgdef.data, rihs01=conn.digest,
                                                 serialization_format=fmt, offered_qos_profiles=qos)
        self.out_conns[conn.id] = out
        if conn.topic == "/tf" and conn.msgtype == "tf2_msgs/msg/TFMessage":
            self.tf_conn = out
        return out

    def copy(self, conn, t_log: int, raw) -> None:
        """Copy one raw message of the input bag (connection ``conn``) unchanged."""
        self.writer.write(self._out_conn(conn), t_log, raw)

    def add_results(self, r, t_log: int, overlay, header) -> None:
        """Pose, ``/tf``, markers and the overlay image ``(H, W, 3)`` uint8 RGB of one result ``r`` (an
        :class:`~handypriors_core.app.track.FrameResult`: object2camera, covariance, contacts, status, quality)
        at log time ``t_log`` [ns], stamped with the image's ``header``."""
        import numpy as np

        from ..geometry.transforms import pose_from_transform

        ts = self.ts
        T = self.ts.types
        stamp = header.stamp
        frame_id = self.camera_frame
        pos, quat = (v.tolist() for v in pose_from_transform(r.object2camera.double()))
        Header = T["std_msgs/msg/Header"]
        hdr = Header(stamp=stamp, frame_id=frame_id)
        point = T["geometry_msgs/msg/Point"](x=pos[0], y=pos[1], z=pos[2])
        orient = T["geometry_msgs/msg/Quaternion"](x=quat[0], y=quat[1], z=quat[2], w=quat[3])
        pose = T["geometry_msgs/msg/Pose"](position=point, orientation=orient)
        cov = np.zeros(36) if r.covariance is None else r.covariance.double().reshape(-1).numpy()
        pwc = T["geometry_msgs/msg/PoseWithCovarianceStamped"](
            header=hdr, pose=T["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=cov.astype(np.float64)))
        self.writer.write(self.pose_conn, t_log, ts.serialize_cdr(pwc, "geometry_msgs/msg/PoseWithCovarianceStamped"))
        # TF camera -> object
        tf = T["geometry_msgs/msg/TransformStamped"](
            header=hdr, child_frame_id=self.object_frame,
            transform=T["geometry_msgs/msg/Transform"](
                translation=T["geometry_msgs/msg/Vector3"](x=pos[0], y=pos[1], z=pos[2]), rotation=orient))
        if self.tf_conn is None:
            self.tf_conn = self.writer.add_connection("/tf", "tf2_msgs/msg/TFMessage", typestore=ts)
        self.writer.write(self.tf_conn, t_log, ts.serialize_cdr(T["tf2_msgs/msg/TFMessage"](transforms=[tf]),
                                                                "tf2_msgs/msg/TFMessage"))
        # markers: the object mesh at the pose, the contacts as spheres, a status text
        self.writer.write(self.marker_conn, t_log, ts.serialize_cdr(self._markers(r, hdr, pose),
                                                                    "visualization_msgs/msg/MarkerArray"))
        h, w = overlay.shape[:2]
        img = T["sensor_msgs/msg/Image"](header=hdr, height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3,
                                         data=np.ascontiguousarray(overlay).reshape(-1))
        self.writer.write(self.overlay_conn, t_log, ts.serialize_cdr(img, "sensor_msgs/msg/Image"))

    def _markers(self, r, hdr, pose):
        import numpy as np

        T = self.ts.types
        Marker = T["visualization_msgs/msg/Marker"]
        V3, RGBA, P = T["geometry_msgs/msg/Vector3"], T["std_msgs/msg/ColorRGBA"], T["geometry_msgs/msg/Point"]
        Duration = T["builtin_interfaces/msg/Duration"]
        identity = T["geometry_msgs/msg/Pose"](position=P(x=0.0, y=0.0, z=0.0),
                                               orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0,
                                                                                             w=1.0))
        empty_image = T["sensor_msgs/msg/CompressedImage"](header=hdr, format="", data=np.zeros(0, dtype=np.uint8))
        mesh_file = T["visualization_msgs/msg/MeshFile"](filename="", data=np.zeros(0, dtype=np.uint8))

        def marker(ns, mid, mtype, mpose, scale, colour, points=(), colours=(), text="", mesh=""):
            return Marker(header=hdr, ns=ns, id=mid, type=mtype, action=0, pose=mpose, scale=scale, color=colour,
                          lifetime=Duration(sec=0, nanosec=0), frame_locked=False, points=list(points),
                          colors=list(colours), texture_resource="", texture=empty_image, uv_coordinates=[],
                          text=text, mesh_resource=mesh, mesh_file=mesh_file, mesh_use_embedded_materials=False)

        ok = r.status == "tracking"
        obj_colour = RGBA(r=0.2, g=0.85, b=0.2, a=0.6) if ok else RGBA(r=0.95, g=0.3, b=0.2, a=0.6)
        markers = [marker("object", 0, 10, pose,  # MESH_RESOURCE
                          V3(x=1.0, y=1.0, z=1.0), obj_colour, mesh=self.mesh_uri)]
        pts, cols = [], []
        if r.contact_points is not None:
            for p, v in zip(r.contact_points.tolist(), r.contact_values.tolist()):
                pts.append(P(x=p[0], y=p[1], z=p[2]))
                cols.append(RGBA(r=1.0, g=float(1.0 - 0.8 * v), b=0.0, a=1.0))
        markers.append(marker("contacts", 1, 7, identity, V3(x=0.006, y=0.006, z=0.006),  # SPHERE_LIST
                              RGBA(r=1.0, g=0.9, b=0.0, a=1.0), pts, cols))
        text_pose = T["geometry_msgs/msg/Pose"](position=P(x=pose.position.x, y=pose.position.y - 0.08,
                                                           z=pose.position.z), orientation=identity.orientation)
        markers.append(marker("status", 2, 9, text_pose, V3(x=0.0, y=0.0, z=0.02),  # TEXT_VIEW_FACING
                              RGBA(r=1.0, g=1.0, b=1.0, a=1.0), text=f"{r.status} q={r.quality:.2f}"))
        return T["visualization_msgs/msg/MarkerArray"](markers=markers)

    def close(self) -> Path:
        import shutil

        self.writer.close()
        if self.single_file:
            inner = self.target / f"{self.target.name}.mcap"
            shutil.move(str(inner), str(self.final))
            shutil.rmtree(self.tmp, ignore_errors=True)
        return self.final
