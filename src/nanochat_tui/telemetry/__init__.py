"""Event schema, the events.jsonl writer/tailer, and sinks (W&B, OpenTelemetry). No Textual."""
