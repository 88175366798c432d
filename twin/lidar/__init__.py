"""LiDAR primitives shared by reality3d and fusion: the ASPRS class table, point clouds gridded onto rasters,
footprint heights. They sit below both so that neither imports the other."""
