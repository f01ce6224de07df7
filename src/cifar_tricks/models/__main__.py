"""``python -m cifar_tricks.models``: print the markdown table of registered models."""

from . import model_table

if __name__ == "__main__":
    print(model_table())
