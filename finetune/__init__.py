"""appkit layer: finetune."""
