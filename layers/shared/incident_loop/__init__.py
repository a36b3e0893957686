"""The incident loop: every failed agent run becomes learning.

Incident -> Pattern -> Recovery -> Policy -> Routing, one Lambda per bridge, chained by SQS.
"""

__version__ = "0.1.0"
