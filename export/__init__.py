"""Export: merge the adapter in fp32, ONNX with KV cache, fp16/int8 variants, TensorRT engines,
and the survival gate. Not built yet (issue 4)."""
