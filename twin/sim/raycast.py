"""Ray casting for the sunlight simulator: occlusion queries on an Embree BVH (embreex) of a triangle soup.

Embree works in float32. Store coordinates are large (projected metres, 10⁶-10⁷), where float32 spacing is 0.25-1 m,
so the scene and the rays are shifted to a local origin (the scene's lower corner) before the cast: over a 20 km
city float32 then resolves about 1 mm. Occlusion queries (``rtcOccluded``: any hit, no nearest-hit search) are what
a shadow test needs; embreex exposes them as ``EmbreeScene.run(..., query="OCCLUDED")``, which measured the same as or
faster than the first-hit query that ``trimesh.ray.ray_pyembree.RayMeshIntersector.intersects_any`` makes (it calls
``intersects_first`` and compares with −1), and skips trimesh's float64 copies and re-normalisation.

An :class:`Occluder` pickles as its arrays (the BVH is rebuilt lazily in the process that casts), so it can be the
``shared`` object of a :mod:`twin.compute` executor; with ``fork`` workers inherit a BVH the parent built
(:meth:`Occluder.prepare`), so no worker builds one. embreex releases the GIL while it casts.

Hot loops should hand :meth:`Occluder.occluded_local` rays already in the local float32 frame (:meth:`local`): one
float64→float32 conversion per window point rather than per ray.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MISS_DISTANCE = 1e30  # embree answers 1e37 for a ray that hits nothing


class Occluder:
    """Triangles to cast against: ``occluded(origins, directions)`` says which rays hit any triangle."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, origin: np.ndarray | None = None) -> None:
        """Keep float64 ``vertices`` (n, 3) and ``faces`` (m, 3); the BVH is built on the first query."""
        self.vertices = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
        self.faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
        if origin is None:
            origin = self.vertices.min(axis=0) if len(self.vertices) else np.zeros(3)
        self.origin = np.asarray(origin, dtype=np.float64)
        self._scene: Any = None

    @property
    def n_triangles(self) -> int:
        """Number of triangles in the scene."""
        return len(self.faces)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the arrays only: an Embree scene cannot cross processes."""
        return {"vertices": self.vertices, "faces": self.faces, "origin": self.origin}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore the arrays; the BVH is rebuilt on the next query."""
        self.__dict__.update(state)
        self._scene = None

    def _embree(self) -> Any:
        """The Embree scene (built once per process)."""
        if self._scene is None:
            from embreex import rtcore_scene
            from embreex.mesh_construction import TriangleMesh

            scene = rtcore_scene.EmbreeScene()
            TriangleMesh(scene=scene, vertices=(self.vertices - self.origin).astype(np.float32),
                         indices=self.faces.astype(np.int32))
            self._scene = scene
        return self._scene

    def prepare(self) -> Occluder:
        """Build the BVH now (before forking workers that should inherit it); returns self."""
        if self.n_triangles:  # embreex commits (builds the BVH) on the first query: make one
            self._embree().run(np.zeros((1, 3), np.float32), np.array([[0.0, 0.0, 1.0]], np.float32),
                               query="OCCLUDED")
        return self

    def local(self, points: np.ndarray) -> np.ndarray:
        """Points (n, 3) in the local float32 frame the BVH is built in."""
        return np.ascontiguousarray(np.asarray(points, dtype=np.float64) - self.origin, dtype=np.float32)

    def occluded_local(self, origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
        """:meth:`occluded` for contiguous float32 (n, 3) origins already in the local frame and directions."""
        if len(origins) == 0 or not self.n_triangles:
            return np.zeros(len(origins), dtype=bool)
        return self._embree().run(origins, directions, query="OCCLUDED") != -1

    def subset(self, faces: np.ndarray) -> Occluder:
        """An occluder of some of the faces (a boolean mask or indices), at the same origin: every ray gets the
        same answer from it as from the whole scene when no removed triangle can be hit."""
        f = self.faces[faces]
        used, inv = np.unique(f.ravel(), return_inverse=True)
        return Occluder(self.vertices[used], inv.reshape(-1, 3), origin=self.origin)

    def _rays(self, origins: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Origins shifted to the local frame and directions, as contiguous float32."""
        o = np.ascontiguousarray((np.asarray(origins, dtype=np.float64) - self.origin), dtype=np.float32)
        d = np.ascontiguousarray(directions, dtype=np.float32)
        if o.shape != d.shape or o.ndim != 2 or o.shape[1] != 3:
            raise ValueError(f"origins {o.shape} and directions {d.shape} must both be (n, 3)")
        return o, d

    def occluded(self, origins: np.ndarray, directions: np.ndarray, tfar: np.ndarray | None = None) -> np.ndarray:
        """Boolean (n,): does the ray from each origin along its direction hit a triangle (within ``tfar``)?"""
        n = len(origins)
        if n == 0 or not self.n_triangles:
            return np.zeros(n, dtype=bool)
        o, d = self._rays(origins, directions)
        kw = {} if tfar is None else {"dists": np.ascontiguousarray(tfar, dtype=np.float32)}
        return self._embree().run(o, d, query="OCCLUDED", **kw) != -1

    def distance(self, origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
        """Distance along each (unit) ray to the nearest triangle; ``inf`` where it hits nothing."""
        n = len(origins)
        if n == 0 or not self.n_triangles:
            return np.full(n, np.inf)
        o, d = self._rays(origins, directions)
        t = self._embree().run(o, d, query="DISTANCE").astype(np.float64)
        return np.where(t > MISS_DISTANCE, np.inf, t)

    def first_triangle(self, origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
        """Index of the nearest triangle each ray hits, −1 where none."""
        n = len(origins)
        if n == 0 or not self.n_triangles:
            return np.full(n, -1, dtype=np.int64)
        o, d = self._rays(origins, directions)
        return self._embree().run(o, d, query="INTERSECT").astype(np.int64)


def merge(meshes: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One triangle soup from many ``(vertices, faces)``: vertices, faces, and the mesh index of every face."""
    verts, faces, owner = [], [], []
    off = 0
    for i, (v, f) in enumerate(meshes):
        if len(f) == 0:
            continue
        verts.append(np.asarray(v, dtype=np.float64))
        faces.append(np.asarray(f, dtype=np.int64) + off)
        owner.append(np.full(len(f), i, dtype=np.int64))
        off += len(v)
    if not faces:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64), np.zeros(0, np.int64)
    return np.concatenate(verts), np.concatenate(faces), np.concatenate(owner)
