"""edgebit's deployment targets, one TOML file each (installed with edgebit as the ``edgebit_targets`` package).

Read them with :mod:`edgebit.targets`; a new board is a new file here.
"""
