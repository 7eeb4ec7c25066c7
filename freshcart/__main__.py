"""`python -m freshcart` is the `freshcart` command."""

from freshcart.cli import main

main()
