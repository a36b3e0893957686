-- A pattern absorbed into a sibling (Bridge 1's merge: matcher.GroupingConfig.merge_after): its signatures point at
-- the sibling, its members count there, and it is no longer a candidate. Its row stays, naming where it went, for
-- the incidents, recoveries and policies that named it.
ALTER TABLE failure_patterns ADD COLUMN merged_into TEXT;
