"""Tests of vmd.client and vmctl: pure parts, and against a stand-in responder on RabbitMQ."""
