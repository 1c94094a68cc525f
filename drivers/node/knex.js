// Knex (over node-postgres) through tdb. Run by TestDrivers (drivers/README.md).
'use strict';

const knexFactory = require('knex');
const { env, check, assert, expectError, pgError, main, sleep } = require('./check');

const url = env('TDB_URL');
const ROWS = Number(env('TDB_ROWS'));

// The seed: "pass the connection string, and they use pg internally".
function open(connection, pool = { min: 0, max: 4 }) {
  return knexFactory({ client: 'pg', connection, pool });
}

main('Knex', async () => {
  const knex = open(url);

  await check('seed pattern: the connection string alone (sslmode=require), select id, name, balance from accounts', async () => {
    const rows = await knex.select('id', 'name', 'balance').from('accounts');
    assert(rows.some((r) => r.name === 'Bob' && r.balance === '2000.00'), `rows ${JSON.stringify(rows)}`);
  });

  await check('parameterised queries: 200 builder inserts, 200 raw selects with bindings', async () => {
    for (let i = 0; i < 200; i++) {
      await knex('accounts').insert({ name: `p${i}`, email: `p${i}@test.com`, balance: i });
    }
    for (let i = 0; i < 200; i++) {
      const { rows } = await knex.raw('SELECT balance FROM accounts WHERE email = ?', [`p${i}@test.com`]);
      assert(rows.length === 1 && Number(rows[0].balance) === i, `p${i}: ${JSON.stringify(rows)}`);
    }
  });

  await check('transaction rolled back leaves nothing', async () => {
    const count = async () => Number((await knex('accounts').count({ n: '*' }))[0].n);
    const before = await count();
    await expectError(() => knex.transaction(async (trx) => {
      await trx('accounts').insert({ name: 'tx', email: 'tx@test.com' });
      await trx('accounts').where({ name: 'Bob' }).del();
      throw new Error('roll back');
    }));
    const after = await count();
    assert(before === after, `count ${before} before, ${after} after rollback`);
  });

  await check(`large result streamed (.stream() over pg-query-stream, ${ROWS} rows)`, async () => {
    let n = 0;
    let sum = 0;
    const stream = knex.raw("SELECT i, repeat('x', 20) AS s FROM generate_series(1, ?::int) i", [ROWS]).stream({ batchSize: 1000 });
    for await (const r of stream) { n++; sum += r.i; }
    assert(n === ROWS && sum === (ROWS * (ROWS + 1)) / 2, `${n} rows, sum ${sum}`);
  });

  await check(`DDL refused on a tenant (knex.schema.createTable): ${env('TDB_MSG_DDL')}`, async () => {
    const err = await expectError(() => knex.schema.createTable('evil', (t) => { t.increments(); }));
    pgError(err, 'ERROR', '42501', env('TDB_MSG_DDL'), 'create table "evil" ("id" serial primary key)');
    await knex.raw('SELECT 1');
  });

  // Knex cancels with SELECT pg_cancel_backend(<the BackendKeyData process id>)
  // on another connection, so this needs the process id a session is given to
  // be its backend's pg_backend_pid(). When the cancel misses, Knex still
  // returns the connection to the pool, and the next query waits behind the
  // sleep.
  await check('.timeout(300, { cancel: true }) cancels pg_sleep on the backend', async () => {
    const err = await expectError(() => knex.raw('SELECT pg_sleep(10) /* knex-cancel */').timeout(300, { cancel: true }));
    assert(err.name === 'KnexTimeoutError', `got ${err}`);
    const monitor = open(url, { min: 0, max: 1 });
    try {
      for (let i = 0; ; i++) {
        const { rows } = await monitor.raw("SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%knex-cancel%' AND pid <> pg_backend_pid()");
        if (rows[0].n === 0) break;
        assert(i < 50, `the cancelled pg_sleep still runs on the backend after 5 s: Knex's SELECT pg_cancel_backend(BackendKeyData process id) missed it`);
        await sleep(100);
      }
    } finally {
      await monitor.destroy();
    }
  });

  await check('workspace key (scope workspace [myapp], role write) on a tenant of myapp: insert', async () => {
    const k = open(env('TDB_URL_WORKSPACE'));
    try {
      await k('accounts').insert({ name: 'ws', email: 'knex-ws@test.com' });
    } finally {
      await k.destroy();
    }
  });

  await check(`read key: select works, insert fails 42501 ${env('TDB_MSG_READ_INSERT')}`, async () => {
    const k = open(env('TDB_URL_READ'));
    try {
      await k('accounts').count();
      const err = await expectError(() => k('accounts').insert({ name: 'r', email: 'knex-r@test.com' }));
      pgError(err, 'ERROR', '42501', env('TDB_MSG_READ_INSERT'), 'insert into "accounts" ("email", "name") values ($1, $2)');
    } finally {
      await k.destroy();
    }
  });

  await check(`project key refused on a tenant: ${env('TDB_MSG_PROJECT_SCOPED')}`, async () => {
    const k = open(env('TDB_URL_PROJECT'));
    try {
      const err = await expectError(() => k.raw('SELECT 1'));
      pgError(err, 'FATAL', '28000', env('TDB_MSG_PROJECT_SCOPED'));
    } finally {
      await k.destroy();
    }
  });

  await check('pool (min 0, max 4): 40 concurrent queries; (max 1) a terminated idle connection is not handed out', async () => {
    await Promise.all(Array.from({ length: 40 }, () => knex('accounts').count()));
    const k = open(url, { min: 0, max: 1 });
    try {
      const { rows } = await k.raw('SELECT pg_backend_pid() AS pid');
      await knex.raw('SELECT pg_terminate_backend(?)', [rows[0].pid]);
      await sleep(500);
      await k.raw('SELECT 1');
    } finally {
      await k.destroy();
    }
  });

  await knex.destroy();
});
