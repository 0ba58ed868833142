"""Faithful re-implementations of the reference implementations, for ``benchmarks.quality`` only.

- :mod:`benchmarks.reference.translation`: junyanz/pytorch-CycleGAN-and-pix2pix, its Pix2Pix
  and CycleGAN models (networks, GAN losses, initialisation, optimizers, image pool, linear
  learning-rate policy stepped per epoch), its data preprocessing (``resize_and_crop`` and
  flips) and its test-time behaviour (``test.py``: networks left in training mode, batches of
  one, outputs saved as 8-bit images).
- :mod:`benchmarks.reference.dcgan`: pytorch/examples ``dcgan/main.py`` (its Generator and
  Discriminator, ``weights_init``, Sigmoid + BCELoss, Adam(2e-4, 0.5), real label 1, fake 0).

Written from the reference code's behaviour, not copied from it. Nothing in genart imports these.
"""
