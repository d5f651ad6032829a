"""Masked diffusion language models against autoregressive ones (SMDM, arXiv:2410.18514; MDLM, arXiv:2406.07524).

`mdm` (the model and its objective, ELBO, chain-rule likelihood), `samplers` (ancestral and
low-confidence remasking), `guidance` (unsupervised classifier-free guidance), `reversal` (the
reversal-curse data set), `experiment` (the arms), `report` (figures, tables, conclusion).
"""
