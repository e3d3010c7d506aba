"""The OR monitor window: the only package that imports PyQt5 and pyvistaqt."""
