"""Bearer tokens: who the caller is (tenant) and what it may do (role)."""
