"""A faithful SmartOS vmadm simulator (vmd-vmadm, vmd-vmadm-ctl). Imports nothing of the service."""
