"""Package discovery (the rest of the metadata is in pyproject.toml): edgebit's own packages, plus the repository's
top-level ops/ and targets/ folders installed as ``edgebit_ops`` and ``edgebit_targets``."""

from setuptools import find_packages, setup

MAPPED = {"edgebit_ops": "ops", "edgebit_targets": "targets"}
packages = find_packages(include=["edgebit", "edgebit.*"])
for name, folder in MAPPED.items():
    packages += [name + found[len(folder):] for found in find_packages(include=[folder, f"{folder}.*"])]
setup(packages=packages, package_dir=MAPPED)
