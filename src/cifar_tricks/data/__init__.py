"""Datasets as uint8 tensors and the on-device batch loader."""
from .datasets import (
    CIFAR_LABELS,
    ImageData,
    LabelSet,
    Split,
    check_labels,
    cifar10,
    cifar100,
    cifar_class_names,
    stratified_split,
    synthetic,
)
from .loader import BatchLoader, normalisation

__all__ = ["BatchLoader", "CIFAR_LABELS", "ImageData", "LabelSet", "Split", "check_labels",
           "cifar_class_names", "cifar10", "cifar100", "normalisation", "stratified_split",
           "synthetic"]
