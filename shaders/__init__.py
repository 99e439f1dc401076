"""WGSL kernels shipped with hal: builtins (fill, copy) and examples."""
