"""What runs inside a TorchServe worker, shipped whole in every archive: the base every handler builds
on (``base.py``), the generic handler of tensor models (``tensor.py``) and the code they share (the
manifest's schema, artifact loading, request decoding, the v2 codec, batching, errors). A model whose
wire format needs code has its own handler in ``models/<name>/handler.py``."""
