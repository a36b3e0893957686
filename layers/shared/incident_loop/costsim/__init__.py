"""CostSim: what an agent plan will cost, by a static table (V1) and by token pricing (V2)."""
