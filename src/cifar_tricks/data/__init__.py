"""Datasets as uint8 tensors and the on-device batch loader."""
from .datasets import ImageData, Split, cifar10, cifar100, stratified_split, synthetic
from .loader import BatchLoader

__all__ = ["BatchLoader", "ImageData", "Split", "cifar10", "cifar100", "stratified_split",
           "synthetic"]
