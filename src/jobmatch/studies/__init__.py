"""Controlled studies: one simulator knob swept over a grid, each point simulated, ingested, trained and evaluated through the normal flows (`jobmatch study`)."""
