"""The graph's nodes: planner, executor (with the specialist loop), synthesizer, responder."""
