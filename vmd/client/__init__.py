"""The Python client of vmd's public protocol (used by vmctl and the HTTP gateway)."""
