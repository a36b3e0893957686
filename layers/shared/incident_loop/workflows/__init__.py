"""Workflows (seed 004): an ordered list of skill calls, run by a queue-fed function, every op audited in
m11_audit, and a replay verifier that re-runs a definition on the recorded outputs without calling a skill.

* definitions.py: what the registry says about a definition (skills that exist, literal args that fit)
* refs.py:        references to earlier results, resolved
* service.py:     POST /workflows and GET /workflows/{id}
* runner.py:      the run, op by op, resumable; consumer.py its SQS handler
* replay.py:      the verifier; verify.py its pure checks
* retention.py:   the scheduled audit retention
* relay.py:       the scheduled relay of runs whose message never reached the runner
"""
