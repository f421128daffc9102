"""``python -m cgbench``: the command line, also as torchrun's ``-m cgbench run ...``."""

from cgbench.cli import main

if __name__ == "__main__":  # spawned processes import this module as __mp_main__: run nothing then
    main(prog_name="cgbench")
