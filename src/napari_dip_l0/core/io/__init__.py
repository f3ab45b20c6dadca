"""Image files in and out: headers, lazy reading, atomic writing, OME-Zarr."""
