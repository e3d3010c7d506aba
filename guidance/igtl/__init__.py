"""OpenIGTLink: the server (poses and status out; poses and images in), its messages and device
names."""
