"""OGC 3D Tiles 1.1 for the city: buildings, terrain and point clouds as glTF (GLB) content placed in ECEF."""
