"""Real-scene 3D from point clouds: ground filter, terrain rasters and mesh, individual trees."""
