"""Metatune's learning core: configs, tasks, data, pure training code, and the Tune adapter.

Only :mod:`trainables.trainable` imports Ray; everything else is plain PyTorch/transformers.
"""
