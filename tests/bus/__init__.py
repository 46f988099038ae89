"""Tests of vmd.bus against the real RabbitMQ (and its pure parts)."""
