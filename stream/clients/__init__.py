"""What people outside the worker run: the typed client, the event publisher, erasure
requests (`journey forget`) and the demo's simulated traffic."""
