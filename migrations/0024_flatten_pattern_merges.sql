-- Merges made before 0022 left chains (a pattern merged into one that was absorbed later): every absorbed pattern
-- now names the end of its chain, the pattern its incidents meet, as ABSORB_SQL keeps it from 0022 on. UNION, not
-- UNION ALL: a row seen twice ends the walk, so even corrupt data (a cycle) cannot make it run forever.
WITH RECURSIVE chain (tenant_id, id, target) AS (
    SELECT tenant_id, id, merged_into FROM failure_patterns WHERE merged_into IS NOT NULL
  UNION
    SELECT c.tenant_id, c.id, p.merged_into
      FROM chain c JOIN failure_patterns p ON p.tenant_id = c.tenant_id AND p.id = c.target
     WHERE p.merged_into IS NOT NULL
), ends AS (
    SELECT c.tenant_id, c.id, c.target
      FROM chain c JOIN failure_patterns p ON p.tenant_id = c.tenant_id AND p.id = c.target
     WHERE p.merged_into IS NULL
)
UPDATE failure_patterns f SET merged_into = e.target
  FROM ends e
 WHERE f.tenant_id = e.tenant_id AND f.id = e.id AND f.merged_into <> e.target;
