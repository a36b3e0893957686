"""The loop's language (seed 003), one module per concept; import each name from its module.

enums: stages, failure states, policy modes, checkpoint types, the literal vocabularies, the version.
confidence: the confidence bands and the ConfidenceCalculator.
base: JSON safety and the models' common base.
events: what a stage did (LoopEvent) and where a person must decide (HumanCheckpoint).
results: Bridges 1 and 2 (PatternMatchResult, RecoverySuggestion).
policy: Bridges 3 and 4 (PolicyRule, RoutingAdjustment).
status: where a loop stands (LoopStatus); console: its console tree and narrative.
requests: what people send the loop over HTTP (checkpoint decisions, policy feedback, KPIs).
"""
