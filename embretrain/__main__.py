"""``python -m embretrain``: same as the ``embretrain`` command."""

from .cli import main

main(prog_name="embretrain")
