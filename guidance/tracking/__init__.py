"""Tool poses: tool definitions, ArUco marker tracking, pose filter and tracking state, external
trackers."""
