"""Imports every contract module that registers channels beyond the core ones."""

import importlib
import pkgutil

import contracts

for _m in pkgutil.iter_modules(contracts.__path__):
    importlib.import_module(f"contracts.{_m.name}")
