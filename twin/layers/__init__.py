"""H3 spatiotemporal layers: values per H3 cell per time bucket, built from any source, rolled up consistently."""
