"""Chaos scenarios: faults as objects with a contract, schedules, scenario files, a runner whose
rollbacks always run, and randomised exploration that shrinks a failing schedule."""
