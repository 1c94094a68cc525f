// node-postgres (pg) through tdb. Run by TestDrivers (drivers/README.md).
'use strict';

const { Client, Pool } = require('pg');
const Cursor = require('pg-cursor');
const { env, check, assert, expectError, pgError, main, sleep } = require('./check');

const url = env('TDB_URL');
const ssl = { rejectUnauthorized: false }; // as in the seed
const ROWS = Number(env('TDB_ROWS'));

async function connect(connectionString, extra = {}) {
  const client = new Client({ connectionString, ssl, ...extra });
  await client.connect();
  return client;
}

main('node-postgres', async () => {
  await check('seed example (new Client, SELECT id, name, balance FROM accounts)', async () => {
    // The seed's example, with the URL from the environment.
    const client = new Client({
      connectionString: url,
      ssl: { rejectUnauthorized: false }
    });

    await client.connect();
    const { rows } = await client.query('SELECT id, name, balance FROM accounts');
    await client.end();

    assert(rows.some((r) => r.name === 'Bob' && r.balance === '2000.00'), `rows ${JSON.stringify(rows)}`);
  });

  const client = await connect(url);
  client.on('error', (err) => console.log(`client error event: ${err}`));

  await check('the session is TLS', async () => {
    assert(client.connection.stream.encrypted === true, 'socket is not a TLS socket');
  });

  await check('named (server-side) prepared statements with parameters, 200 executions each', async () => {
    for (let i = 0; i < 200; i++) {
      await client.query({
        name: 'ins',
        text: 'INSERT INTO accounts (name, email, balance) VALUES ($1, $2, $3)',
        values: [`p${i}`, `p${i}@test.com`, i],
      });
    }
    for (let i = 0; i < 200; i++) {
      const { rows } = await client.query({ name: 'bal', text: 'SELECT balance FROM accounts WHERE email = $1', values: [`p${i}@test.com`] });
      assert(rows.length === 1 && Number(rows[0].balance) === i, `p${i}: ${JSON.stringify(rows)}`);
    }
    const { rows } = await client.query("SELECT name FROM pg_prepared_statements WHERE name IN ('ins', 'bal')");
    assert(rows.length === 2, `pg_prepared_statements: ${JSON.stringify(rows)}`);
  });

  await check('transaction rolled back leaves nothing', async () => {
    const count = async () => Number((await client.query('SELECT count(*) AS n FROM accounts')).rows[0].n);
    const before = await count();
    await client.query('BEGIN');
    await client.query('INSERT INTO accounts (name, email) VALUES ($1, $2)', ['tx', 'tx@test.com']);
    await client.query("DELETE FROM accounts WHERE name = 'Bob'");
    await client.query('ROLLBACK');
    const after = await count();
    assert(before === after, `count ${before} before, ${after} after rollback`);
  });

  await check(`large result read incrementally (pg-cursor, 1000 rows per read, ${ROWS} rows)`, async () => {
    const cursor = client.query(new Cursor("SELECT i, repeat('x', 20) AS s FROM generate_series(1, $1::int) i", [ROWS]));
    let n = 0;
    let sum = 0;
    for (;;) {
      const rows = await cursor.read(1000);
      if (rows.length === 0) break;
      assert(rows.length <= 1000, `read returned ${rows.length} rows`);
      for (const r of rows) { n++; sum += r.i; }
    }
    await cursor.close();
    assert(n === ROWS && sum === (ROWS * (ROWS + 1)) / 2, `${n} rows, sum ${sum}`);
  });

  await check(`DDL refused on a tenant: ${env('TDB_MSG_DDL')}`, async () => {
    const err = await expectError(() => client.query('CREATE TABLE evil (id int)'));
    pgError(err, 'ERROR', '42501', env('TDB_MSG_DDL'));
    await client.query('SELECT 1');
  });

  await check('statement_timeout cancels pg_sleep (57014)', async () => {
    await client.query("SET statement_timeout = '300ms'");
    const err = await expectError(() => client.query('SELECT pg_sleep(30)'));
    pgError(err, 'ERROR', '57014', 'canceling statement due to statement timeout');
    await client.query('RESET statement_timeout');
  });

  await check('statement_timeout client option (a startup parameter) cancels pg_sleep (57014)', async () => {
    const c = await connect(url, { statement_timeout: 300 });
    try {
      const err = await expectError(() => c.query('SELECT pg_sleep(30)'));
      pgError(err, 'ERROR', '57014', 'canceling statement due to statement timeout');
    } finally {
      await c.end();
    }
  });

  await check('workspace key (scope workspace [myapp], role write) on a tenant of myapp: INSERT', async () => {
    const c = await connect(env('TDB_URL_WORKSPACE'));
    try {
      await c.query('INSERT INTO accounts (name, email) VALUES ($1, $2)', ['ws', 'node-ws@test.com']);
      const { rows } = await c.query('SELECT current_user AS u');
      assert(rows[0].u.endsWith('_write'), `current_user ${rows[0].u}`);
    } finally {
      await c.end();
    }
  });

  await check(`read key: SELECT works, INSERT fails 42501 ${env('TDB_MSG_READ_INSERT')}`, async () => {
    const c = await connect(env('TDB_URL_READ'));
    try {
      await c.query('SELECT count(*) FROM accounts');
      const err = await expectError(() => c.query('INSERT INTO accounts (name, email) VALUES ($1, $2)', ['r', 'node-r@test.com']));
      pgError(err, 'ERROR', '42501', env('TDB_MSG_READ_INSERT'));
    } finally {
      await c.end();
    }
  });

  await check(`project key refused on a tenant: ${env('TDB_MSG_PROJECT_SCOPED')}`, async () => {
    const c = new Client({ connectionString: env('TDB_URL_PROJECT'), ssl });
    const err = await expectError(() => c.connect());
    pgError(err, 'FATAL', '28000', env('TDB_MSG_PROJECT_SCOPED'));
  });

  await check('Pool (max 4, maxLifetimeSeconds 1500): concurrent queries; a terminated idle client is dropped, not handed out', async () => {
    const pool = new Pool({ connectionString: url, ssl, max: 4, idleTimeoutMillis: 30000, maxLifetimeSeconds: 1500 });
    const poolErrors = [];
    pool.on('error', (err) => poolErrors.push(err)); // an idle client whose backend died
    try {
      await Promise.all(Array.from({ length: 40 }, (_, i) => pool.query('SELECT count(*) FROM accounts WHERE balance >= $1', [i])));
      // Leave one idle client and terminate its backend from another connection.
      const pc = await pool.connect();
      const pid = (await pc.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
      pc.release();
      await client.query('SELECT pg_terminate_backend($1)', [pid]);
      await sleep(500);
      const { rows } = await pool.query('SELECT 1 AS one');
      assert(rows[0].one === 1, 'no row');
      assert(poolErrors.length > 0, 'the pool saw no error for the terminated client (the proxy kept its socket open?)');
    } finally {
      await pool.end();
    }
  });

  await client.end();
});
