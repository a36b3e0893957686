-- The catalog's order: a message's pattern match is the first entry, in the reviewed file's order, whose pattern
-- finds it. error_catalog kept no order, and the entries in force were read alphabetically by code, so a
-- message matching several entries was stored with another entry (another retryability, another recovery)
-- than the shipped file (the fallback) gives it. sync-catalog writes each entry's place in the file here.

ALTER TABLE error_catalog ADD COLUMN position integer;
