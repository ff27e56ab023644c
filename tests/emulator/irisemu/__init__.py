"""irisemu: a TEST-ONLY emulator of the InterSystems IRIS / Caché command line (never shipped).

See tests/emulator/README.md for the behaviour and every departure from real IRIS.
"""
__version__ = "1.0"
