"""EchoAtt ("Attend, Copy, then Adjust", arXiv 2409.14595): layers that reuse an earlier layer's attention.

- `profile`: `EchoAttProfile`, the settings, with the `smoke` and `full` presets.
- `student`: `build_student(teacher, groups)`, the model whose group followers reuse A_h (the method).
- `arms`: which layers each arm shares (similarity-chosen, random draws, last inner layers).
- `speed`: held-out perplexity, prefill/decode speed, KV cache size and training-step time of a model.
- `experiment`: `EchoAttExperiment` / `run_experiment`, every arm trained and measured, as runs.
- `report`: the table, figures, live curves and `conclusion(table)`.

Layers are chosen with the measurement lab, `workbench.attention`.
"""
