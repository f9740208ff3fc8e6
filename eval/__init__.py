"""appkit layer: eval."""
