"""The OR monitor: state and logic without Qt; ``monitor.qt`` holds the only PyQt5/pyvistaqt
code."""
