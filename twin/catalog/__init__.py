"""Source catalog: every ingested file as a versioned SourceAsset (checksum, CRS, extent, time, licence)."""
