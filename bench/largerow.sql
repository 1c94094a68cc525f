-- pgbench -f: one transaction in 200 reads a row over the event loop's 64 KiB
-- buffer (the session leaves the loop for it), the others the -S select.
\set r random(1, 200)
\set aid random(1, 1000000)
\if :r = 1
SELECT repeat('x', 70000 + :aid % 10);
\else
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
\endif
