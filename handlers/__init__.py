"""TorchServe handlers: one shared base (``base.py``) and one thin class per model."""
