"""appkit layer: ui."""
