"""Entry point of the frozen desktop app: the same CLI as the ``mrfviewer`` command."""

import multiprocessing
import sys

from mrfviewer.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # torch/dask may start worker processes
    sys.exit(main())
