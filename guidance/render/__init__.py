"""What the views draw, without Qt: scene data, the calibrated VTK camera, AR overlay, CT slices."""
