"""The napari-free heart: ℓ0 solvers, the DIP network, the ADMM loop, presets, layout."""
