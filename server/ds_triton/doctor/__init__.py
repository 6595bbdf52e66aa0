"""``ds-triton doctor``: is this machine ready to serve the repository? One line per check.

Each check module returns ``Check`` results; nothing here changes the machine.
"""
