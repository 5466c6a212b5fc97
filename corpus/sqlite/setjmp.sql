-- SQL functions of the driver that use setjmp/longjmp inside themselves
-- (built with --setjmp, see driver.c): every setjmp and longjmp unwinds and
-- rewinds the whole stack, SQLite's VDBE frames included. Results and
-- errors must be those of the native build.

SELECT sj_div(7, 2), sj_div(-7, 2), sj_div(NULL, 3), sj_div(9223372036854775807, -1);
SELECT sj_div(1, 0);
SELECT sj_div(-9223372036854775808, -1);
SELECT 'after the errors';

-- One setjmp per row, in a WHERE clause, over a table scan and a join.
CREATE TABLE t (id INTEGER PRIMARY KEY, a INTEGER, b INTEGER);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
INSERT INTO t SELECT i, i * 37 % 1001 - 500, i % 13 FROM n;
SELECT count(*), sum(sj_div(a, b + 1)), min(sj_div(a, b + 1)), max(sj_div(a, b + 1)) FROM t;
SELECT b, count(*), sum(sj_div(a * 1000, b + 1)) FROM t GROUP BY b ORDER BY b;
SELECT count(*) FROM t x JOIN t y ON y.id = x.id + 1 WHERE sj_div(x.a, y.b + 1) > 3;
-- An error from the 1000th row stops the statement, as any function error.
SELECT sum(sj_div(a, 1000 - id)) FROM t;

-- Jumps from depth: the longjmp crosses the helper's frames only.
SELECT sj_depth(0), sj_depth(1), sj_depth(10), sj_depth(100), sj_depth(1000);
SELECT sum(sj_depth(id % 50)) FROM t;
SELECT sj_depth(-1);
SELECT sj_depth(10001);

-- An aggregate whose steps each setjmp; a text value longjmps out of one.
SELECT sj_sum(a), sum(a) FROM t;
SELECT b, sj_sum(a) FROM t GROUP BY b ORDER BY b LIMIT 5;
SELECT sj_sum(x) FROM (SELECT 1 AS x UNION ALL SELECT 'two' UNION ALL SELECT 3);
SELECT sj_sum(x) FROM (SELECT 1 AS x WHERE 0);
SELECT sj_sum(9223372036854775807 * (id = 1) + (id > 1)) FROM t WHERE id <= 3;

-- The functions inside a window, a trigger and a recursive CTE.
SELECT id, sum(sj_div(a, 3)) OVER (ORDER BY id ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
FROM t WHERE id <= 6 ORDER BY id;
CREATE TABLE log (v INTEGER);
CREATE TRIGGER t_ins AFTER INSERT ON t BEGIN
  INSERT INTO log VALUES (sj_div(new.a, new.b));
END;
INSERT INTO t VALUES (5001, 100, 7);
INSERT INTO t VALUES (5002, 100, 0);
SELECT v FROM log;
SELECT count(*) FROM t WHERE id > 5000;
WITH RECURSIVE r(i, v) AS (SELECT 1, 1000000 UNION ALL
  SELECT i + 1, sj_div(v * 3, 2) % 1000003 + sj_depth(i % 7) FROM r WHERE i < 300)
SELECT count(*), max(v) FROM r;

-- A transaction survives an error inside a function.
BEGIN;
UPDATE t SET a = sj_div(a, 2) WHERE id <= 10;
UPDATE t SET a = sj_div(a, b) WHERE id <= 20;
COMMIT;
SELECT sum(a) FROM t WHERE id <= 20;
