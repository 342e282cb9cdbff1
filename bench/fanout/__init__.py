"""Fan-out benchmark: deliveries/s, send-to-receive latency, RSS per socket."""
