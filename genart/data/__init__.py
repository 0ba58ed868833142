"""Datasets: synthetic ones, the one image decoder, and Ray Data streams.

``DIRECTIONS`` are the two ways a paired A|B dataset is read, and so the two directions of a
translation model; kept here, torch-free, for the CLI's parser as much as for the pipelines.
"""

DIRECTIONS = ("AtoB", "BtoA")
