"""Runs template.yaml on one machine: `python -m local` (make dev) and `python -m local.demo` (make demo).

The template stays the one source of truth: `template` reads it (functions, routes, queues, event
sources, the schedule, the secrets) and resolves its intrinsics with local values; `stack` starts
what it declares (moto for SQS and Secrets Manager, a redis-server, one worker process per
function, the SQS pollers, the schedule timer) and `server` serves its HTTP routes.
"""
