"""vmd: the VM power-state service of a Danube Cloud (SmartOS) VM cloud."""

__version__ = "0.1.0"
