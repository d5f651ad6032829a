"""A small model on a CPU, as GEB-1.3B set out to do ("GEB-1.3B: Open Lightweight Large Language Model",
arXiv:2406.09900): generation with a KV cache and streaming (`decode`), weight precisions float32 to int4
(`quantize`), multi-head, grouped-query and multi-query attention (`gqa`), the experiment that measures
them (`experiment`) and its figures and conclusion (`report`)."""
