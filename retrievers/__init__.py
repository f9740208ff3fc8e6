"""appkit layer: retrievers."""
