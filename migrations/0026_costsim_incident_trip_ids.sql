-- A CostSim incident is one trip's, and a trip is named by the id the breaker gives it (BreakerRecord.trip_id), not
-- by the breaker's version: versions start again at 0 with a new breakers table (a stack made again against this
-- database, a point-in-time restore, the item deleted), and a trip at a version an earlier table had used found
-- that trip's row, so it was neither filed nor sent into the loop. Rows filed before trip ids keep their key.
ALTER TABLE costsim_incidents ADD COLUMN trip_id TEXT;
ALTER TABLE costsim_incidents DROP CONSTRAINT uq_costsim_incidents_trip;
CREATE UNIQUE INDEX uq_costsim_incidents_trip_id ON costsim_incidents (breaker_name, trip_id) WHERE trip_id IS NOT NULL;
CREATE UNIQUE INDEX uq_costsim_incidents_version ON costsim_incidents (breaker_name, breaker_version)
    WHERE trip_id IS NULL;
