-- A candidate key keeps the first 64 characters of a pattern's first token (grouping/matcher.py,
-- MAX_KEY_WORD): the key is in a btree index, whose entries PostgreSQL bounds (2704 bytes), and a
-- message whose first word was a long blob without digits could not be stored as a pattern at all.
-- Patterns stored before keep their whole first word in the key: keyed here as the matcher keys them now,
-- so a sibling still finds them. The key is "<token count>:<first token>".

UPDATE failure_patterns
SET candidate_key = left(candidate_key, strpos(candidate_key, ':'))
                    || left(substr(candidate_key, strpos(candidate_key, ':') + 1), 64)
WHERE char_length(candidate_key) - strpos(candidate_key, ':') > 64;
