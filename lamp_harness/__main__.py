"""``python -m lamp_harness``: the ``lamp`` command (how ``--nproc-per-node`` starts its workers)."""

from lamp_harness.cli import main

if __name__ == "__main__":
    main()
