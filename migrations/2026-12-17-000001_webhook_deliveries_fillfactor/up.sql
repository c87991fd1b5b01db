-- A delivery's row is rewritten when a sender claims it (claimed_until) and again with
-- the attempt's result. The claim touches no indexed column (nor a column of the due
-- index's predicate), so PostgreSQL can keep the new version on the same page and skip
-- every index ("HOT" update) — if the page has room. With full pages almost no claim
-- was HOT (780 of a benchmark run's 20,000 claims). Leaving half of each page free gives
-- it that room. Takes a SHARE UPDATE EXCLUSIVE lock (reads and writes go on) and
-- applies to pages written from now on.
ALTER TABLE webhook_deliveries SET (fillfactor = 50);
