"""HYPR engine: runs OCI images as microVMs. See DESIGN.md for the layers."""

__version__ = "0.1.0"
