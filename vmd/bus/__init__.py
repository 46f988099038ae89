"""The only package that talks to RabbitMQ (aio-pika): topology, publish, consume, RPC."""
