"""OCI images: references, content store, image configs, archives, root filesystems."""
