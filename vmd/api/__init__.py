"""`vmd api`: the seed's REST API over HTTP, as just another AMQP command publisher."""
