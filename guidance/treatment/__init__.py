"""The treatment being set up: how far the applicator is from the plan."""
