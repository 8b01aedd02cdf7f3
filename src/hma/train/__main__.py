"""``python -m hma.train ...`` (what ``torchrun --nproc_per_node=N -m hma.train`` runs): ``hma train``."""

import sys

from hma.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
