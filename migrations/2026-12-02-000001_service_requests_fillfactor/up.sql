-- A service request's row is rewritten once it finishes (status, attempts, response,
-- error, timings). None of those columns is indexed, so PostgreSQL can keep the new
-- version on the same page and skip every index ("HOT" update) — if the page has room.
-- Leaving a fifth of each page free gives it that room. Applies to pages written from
-- now on; `VACUUM FULL service_requests` would repack older ones.
ALTER TABLE service_requests SET (fillfactor = 80);
