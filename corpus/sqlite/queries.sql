-- A query workload: a small shop built with recursive CTEs (thousands of
-- rows), indexes, joins, aggregates, window functions, string functions,
-- a transaction rolled back, savepoints, triggers, views, and a deep
-- recursive CTE. Every multi-row result is ordered, so the output is fixed.

PRAGMA foreign_keys = ON;

CREATE TABLE customer (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  city TEXT NOT NULL,
  joined INTEGER NOT NULL CHECK (joined BETWEEN 2000 AND 2030)
);
CREATE TABLE product (
  id INTEGER PRIMARY KEY,
  title TEXT NOT NULL,
  price REAL NOT NULL CHECK (price > 0),
  category TEXT NOT NULL
);
CREATE TABLE orders (
  id INTEGER PRIMARY KEY,
  customer_id INTEGER NOT NULL REFERENCES customer(id),
  product_id INTEGER NOT NULL REFERENCES product(id),
  quantity INTEGER NOT NULL CHECK (quantity > 0),
  day INTEGER NOT NULL
);

-- 500 customers, 200 products, 6000 orders, all from arithmetic on a counter.
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)
INSERT INTO customer
SELECT i,
       'cust' || printf('%04d', i),
       CASE i % 7 WHEN 0 THEN 'Oslo' WHEN 1 THEN 'Lima' WHEN 2 THEN 'Pune'
                  WHEN 3 THEN 'Kyiv' WHEN 4 THEN 'Bern' WHEN 5 THEN 'Nice'
                  ELSE 'Cork' END,
       2000 + (i * 37) % 25
FROM n;

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
INSERT INTO product
SELECT i,
       upper(substr('abcdefghijklmnopqrstuvwxyz', 1 + i % 26, 1)) ||
         lower(substr('QWERTYUIOPASDFGHJKLZXCVBNM', 1 + (i * 7) % 26, 3)) ||
         '-' || i,
       round(((i * 7919) % 10000) / 100.0 + 0.99, 2),
       CASE i % 4 WHEN 0 THEN 'books' WHEN 1 THEN 'tools'
                  WHEN 2 THEN 'games' ELSE 'food' END
FROM n;

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 6000)
INSERT INTO orders
SELECT i, 1 + (i * 7907) % 500, 1 + (i * 104729) % 200, 1 + (i * i + i / 13) % 9, i % 365
FROM n;

CREATE INDEX orders_customer ON orders(customer_id);
CREATE INDEX orders_product_day ON orders(product_id, day);
CREATE INDEX customer_city ON customer(city, joined);
ANALYZE;

SELECT count(*), sum(quantity), min(day), max(day) FROM orders;
SELECT (SELECT count(*) FROM customer), (SELECT count(*) FROM product);

-- Joins and grouping.
SELECT c.city, count(*) AS orders, sum(o.quantity) AS items,
       printf('%.2f', sum(o.quantity * p.price)) AS revenue
FROM orders o
JOIN customer c ON c.id = o.customer_id
JOIN product p ON p.id = o.product_id
GROUP BY c.city
ORDER BY c.city;

SELECT p.category, count(DISTINCT o.customer_id) AS buyers,
       round(avg(p.price), 4) AS avg_price, max(o.quantity) AS most
FROM product p LEFT JOIN orders o ON o.product_id = p.id
GROUP BY p.category
HAVING buyers > 10
ORDER BY buyers DESC, p.category;

-- The ten best customers, with ties broken by id.
SELECT c.name, sum(o.quantity * p.price) AS spent
FROM customer c
JOIN orders o ON o.customer_id = c.id
JOIN product p ON p.id = o.product_id
GROUP BY c.id
ORDER BY spent DESC, c.id
LIMIT 10;

-- Customers who never ordered a book (NOT EXISTS, correlated).
SELECT count(*) FROM customer c
WHERE NOT EXISTS (
  SELECT 1 FROM orders o JOIN product p ON p.id = o.product_id
  WHERE o.customer_id = c.id AND p.category = 'books');

-- Window functions: rank within a city, running totals, lag/lead, ntile.
SELECT city, name, spent, rnk FROM (
  SELECT c.city, c.name, sum(o.quantity) AS spent,
         rank() OVER (PARTITION BY c.city ORDER BY sum(o.quantity) DESC) AS rnk
  FROM customer c JOIN orders o ON o.customer_id = c.id
  GROUP BY c.id)
WHERE rnk <= 2
ORDER BY city, rnk, name;

SELECT day, daily, sum(daily) OVER (ORDER BY day) AS running,
       lag(daily) OVER (ORDER BY day) AS prev,
       lead(daily, 2, -1) OVER (ORDER BY day) AS next2,
       ntile(4) OVER (ORDER BY day) AS quartile
FROM (SELECT day, sum(quantity) AS daily FROM orders GROUP BY day)
WHERE day < 12
ORDER BY day;

SELECT category, title, price,
       row_number() OVER w AS rn,
       first_value(title) OVER w AS cheapest,
       round(avg(price) OVER (PARTITION BY category ORDER BY price
                              ROWS BETWEEN 2 PRECEDING AND CURRENT ROW), 3) AS moving
FROM product
WINDOW w AS (PARTITION BY category ORDER BY price, id)
ORDER BY category, rn
LIMIT 12;

-- String functions.
SELECT name, length(name), upper(name), substr(name, 5), replace(name, 'cust', 'c#'),
       instr(name, '0'), trim('  ' || city || '  '), hex(city), quote(city),
       printf('%-6s|%5d|%8.3f|%x', city, joined, joined / 7.0, joined)
FROM customer WHERE id IN (1, 77, 500) ORDER BY id;
SELECT group_concat(city, ',') FROM (SELECT DISTINCT city FROM customer ORDER BY city);
SELECT city, count(*) FROM customer WHERE name LIKE 'cust01%' OR name GLOB '*99' GROUP BY city ORDER BY city;
SELECT soundex('Robert'), soundex('Rupert'), unicode('é'), char(72, 105), ltrim('xxhixx', 'x'),
       rtrim('xxhixx', 'x'), 'a' || NULL, coalesce(NULL, 'fallback'), nullif(3, 3), typeof(1.0), typeof(x'01');

-- Type affinity and arithmetic corners.
SELECT 1/3, 1.0/3, 7 % 3, -7 % 3, 9223372036854775807 + 0, CAST('12abc' AS INTEGER),
       CAST(3.99 AS INTEGER), 0.1 + 0.2, 1e300 * 1e10, abs(-5), max(3, 9, 1), min('b', 'a');

-- Views, a CTE over a view, and a compound select.
CREATE VIEW city_items AS
  SELECT c.city, sum(o.quantity) AS items FROM customer c JOIN orders o ON o.customer_id = c.id
  GROUP BY c.city;
WITH top AS (SELECT city FROM city_items ORDER BY items DESC LIMIT 3)
SELECT city FROM top UNION SELECT 'Zurich' EXCEPT SELECT 'Lima' ORDER BY 1;

-- A transaction that is rolled back leaves nothing behind.
BEGIN;
DELETE FROM orders WHERE day < 100;
UPDATE product SET price = price * 2;
SELECT (SELECT count(*) FROM orders), (SELECT printf('%.2f', sum(price)) FROM product);
ROLLBACK;
SELECT count(*) FROM orders;
SELECT printf('%.2f', sum(price)) FROM product;

-- Savepoints: the inner work is undone, the outer kept.
BEGIN;
INSERT INTO customer VALUES (501, 'late', 'Oslo', 2030);
SAVEPOINT inner;
DELETE FROM orders WHERE customer_id = 1;
SELECT count(*) FROM orders WHERE customer_id = 1;
ROLLBACK TO inner;
RELEASE inner;
COMMIT;
SELECT count(*) FROM orders WHERE customer_id = 1;
SELECT name FROM customer WHERE id = 501;

-- Constraint violations and other errors: each fails alone, the next
-- statement runs.
INSERT INTO customer VALUES (1, 'dup', 'Oslo', 2001);
INSERT INTO customer VALUES (900, 'cust0002', 'Oslo', 2001);
INSERT INTO customer VALUES (901, NULL, 'Oslo', 2001);
INSERT INTO customer VALUES (902, 'old', 'Oslo', 1999);
INSERT INTO orders VALUES (9000, 12345, 1, 1, 1);
DELETE FROM customer WHERE id = 2;
UPDATE product SET price = -1 WHERE id = 3;
SELECT * FROM no_such_table;
SELECT no_such_column FROM customer;
SELECT count(*) FROM customer WHERE;
SELECT abs(-9223372036854775808);
SELECT sum(x) FROM (SELECT 9223372036854775807 AS x UNION ALL SELECT 1);
CREATE TABLE customer (x);
COMMIT;
SELECT 'still running', count(*) FROM customer;

-- A constraint failing inside a transaction: the statement is undone, the
-- transaction goes on.
BEGIN;
INSERT INTO product VALUES (201, 'ok', 1.5, 'food');
INSERT INTO product VALUES (202, 'bad', 0, 'food');
INSERT INTO product VALUES (203, 'ok too', 2.5, 'food');
COMMIT;
SELECT id, title, price FROM product WHERE id > 200 ORDER BY id;

-- Triggers keep an audit trail; a RAISE aborts the statement.
CREATE TABLE audit (what TEXT, n INTEGER);
CREATE TRIGGER orders_audit AFTER UPDATE OF quantity ON orders
BEGIN
  INSERT INTO audit VALUES ('qty ' || old.quantity || '->' || new.quantity, new.id);
END;
CREATE TRIGGER no_huge BEFORE UPDATE OF quantity ON orders WHEN new.quantity > 1000
BEGIN
  SELECT RAISE(ABORT, 'quantity too large');
END;
UPDATE orders SET quantity = quantity + 1 WHERE id <= 5;
UPDATE orders SET quantity = 5000 WHERE id = 6;
SELECT what, n FROM audit ORDER BY n;

-- UPSERT and RETURNING.
INSERT INTO product VALUES (1, 'again', 9.5, 'tools')
  ON CONFLICT(id) DO UPDATE SET title = excluded.title || '!' RETURNING id, title, price;
DELETE FROM audit WHERE n > 3 RETURNING what;

-- Deep recursion: 200000 steps of a recursive CTE, a Collatz walk, and the
-- Fibonacci numbers to 90 (still exact in 64 bits).
WITH RECURSIVE n(i, s) AS (SELECT 1, 1 UNION ALL SELECT i + 1, (s * 31 + i) % 1000003 FROM n WHERE i < 200000)
SELECT count(*), max(s), sum(s) FROM n;
WITH RECURSIVE c(x, steps) AS (SELECT 837799, 0 UNION ALL
  SELECT CASE WHEN x % 2 = 0 THEN x / 2 ELSE 3 * x + 1 END, steps + 1 FROM c WHERE x > 1)
SELECT max(steps), max(x) FROM c;
WITH RECURSIVE f(k, a, b) AS (SELECT 0, 0, 1 UNION ALL SELECT k + 1, b, a + b FROM f WHERE k < 90)
SELECT k, a FROM f WHERE k % 15 = 0 ORDER BY k;

-- A recursive CTE walking a tree: an org chart of 3000 people.
CREATE TABLE staff (id INTEGER PRIMARY KEY, boss INTEGER REFERENCES staff(id));
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
INSERT INTO staff SELECT i, CASE WHEN i = 1 THEN NULL ELSE i / 2 END FROM n;
WITH RECURSIVE chain(id, depth) AS (SELECT 1, 0 UNION ALL
  SELECT s.id, chain.depth + 1 FROM staff s JOIN chain ON s.boss = chain.id)
SELECT depth, count(*) FROM chain GROUP BY depth ORDER BY depth;

-- The query plan uses the indexes.
EXPLAIN QUERY PLAN SELECT * FROM orders WHERE product_id = 5 AND day > 100;
