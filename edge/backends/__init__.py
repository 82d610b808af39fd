"""Backends that run a model graph: torch (reference), onnxruntime, TensorRT. Each imports its
heavy library inside, so importing this package never imports torch."""
