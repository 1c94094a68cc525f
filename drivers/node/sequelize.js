// Sequelize (over node-postgres) through tdb. Run by TestDrivers (drivers/README.md).
'use strict';

const { Sequelize, DataTypes, QueryTypes } = require('sequelize');
const { env, check, assert, expectError, pgError, main } = require('./check');

const url = env('TDB_URL');
const ROWS = Number(env('TDB_ROWS'));

function open(connectionString, extra = {}) {
  return new Sequelize(connectionString, {
    dialectOptions: { ssl: { require: true }, ...(extra.dialectOptions || {}) },
    logging: false,
    pool: { max: 4, min: 0, idle: 10000, evict: 1000 },
    ...extra,
  });
}

function defineAccount(sequelize) {
  // The seed's model; see the seed example below for the timestamps columns.
  return sequelize.define('Account', {
    name: { type: DataTypes.STRING(255), allowNull: false },
    email: { type: DataTypes.STRING(255), allowNull: false, unique: true },
    balance: { type: DataTypes.DECIMAL(15, 2), defaultValue: 0 },
  }, { tableName: 'accounts', timestamps: true, createdAt: 'created_at', updatedAt: false });
}

main('Sequelize', async () => {
  await check('seed example (new Sequelize(url, { dialectOptions: { ssl: { require: true } } }), define Account, create Alice)', async () => {
    // The seed's example. One change: the seed's accounts table has created_at
    // and no updatedAt, so `timestamps: true` is mapped onto it (with the seed's
    // options verbatim Sequelize inserts "createdAt" and "updatedAt", columns
    // the seed's CREATE TABLE does not have).
    const sequelize = new Sequelize(
      url,
      { dialectOptions: { ssl: { require: true } } }
    );

    const Account = sequelize.define('Account', {
      name: { type: DataTypes.STRING(255), allowNull: false },
      email: { type: DataTypes.STRING(255), allowNull: false, unique: true },
      balance: { type: DataTypes.DECIMAL(15, 2), defaultValue: 0 },
    }, { tableName: 'accounts', timestamps: true, createdAt: 'created_at', updatedAt: false });

    await Account.create({ name: 'Alice', email: 'alice@test.com', balance: 1000 });

    const alice = await Account.findOne({ where: { email: 'alice@test.com' } });
    assert(alice && alice.balance === '1000.00' && alice.created_at instanceof Date, `Alice read back as ${JSON.stringify(alice)}`);
    await sequelize.close();
  });

  const sequelize = open(url);
  const Account = defineAccount(sequelize);

  await check('parameterised queries (bind parameters) 200 inserts and 200 selects', async () => {
    for (let i = 0; i < 200; i++) {
      await Account.create({ name: `p${i}`, email: `p${i}@test.com`, balance: i });
    }
    for (let i = 0; i < 200; i++) {
      const rows = await sequelize.query('SELECT balance FROM accounts WHERE email = $1', { bind: [`p${i}@test.com`], type: QueryTypes.SELECT });
      assert(rows.length === 1 && Number(rows[0].balance) === i, `p${i}: ${JSON.stringify(rows)}`);
    }
  });

  await check('transaction rolled back leaves nothing (unmanaged and managed)', async () => {
    const before = await Account.count();
    const t = await sequelize.transaction();
    await Account.create({ name: 'tx', email: 'tx@test.com' }, { transaction: t });
    await t.rollback();
    await expectError(() => sequelize.transaction(async (t2) => {
      await Account.create({ name: 'tx2', email: 'tx2@test.com' }, { transaction: t2 });
      throw new Error('roll back');
    }));
    const after = await Account.count();
    assert(before === after, `count ${before} before, ${after} after rollback`);
  });

  await check(`large result (${ROWS} rows; Sequelize has no cursor API, so read whole)`, async () => {
    const rows = await sequelize.query("SELECT i, repeat('x', 20) AS s FROM generate_series(1, $1::int) i", { bind: [ROWS], type: QueryTypes.SELECT });
    const sum = rows.reduce((a, r) => a + r.i, 0);
    assert(rows.length === ROWS && sum === (ROWS * (ROWS + 1)) / 2, `${rows.length} rows, sum ${sum}`);
  });

  await check(`DDL refused on a tenant (raw CREATE TABLE and Model.sync()): ${env('TDB_MSG_DDL')}`, async () => {
    let err = await expectError(() => sequelize.query('CREATE TABLE evil (id int)'));
    pgError(err, 'ERROR', '42501', env('TDB_MSG_DDL'));
    const Evil = sequelize.define('Evil', { x: DataTypes.INTEGER }, { tableName: 'evil' });
    err = await expectError(() => Evil.sync());
    pgError(err, 'ERROR', '42501', env('TDB_MSG_DDL'));
    assert(await Account.count() > 0, 'no accounts');
  });

  await check('dialectOptions.statement_timeout cancels pg_sleep (57014)', async () => {
    const s = open(url, { dialectOptions: { ssl: { require: true }, statement_timeout: 300 } });
    try {
      const err = await expectError(() => s.query('SELECT pg_sleep(30)'));
      pgError(err, 'ERROR', '57014', 'canceling statement due to statement timeout');
    } finally {
      await s.close();
    }
  });

  await check('workspace key (scope workspace [myapp], role write) on a tenant of myapp: create', async () => {
    const s = open(env('TDB_URL_WORKSPACE'));
    try {
      await defineAccount(s).create({ name: 'ws', email: 'sequelize-ws@test.com' });
    } finally {
      await s.close();
    }
  });

  await check(`read key: count works, create fails 42501 ${env('TDB_MSG_READ_INSERT')}`, async () => {
    const s = open(env('TDB_URL_READ'));
    try {
      const A = defineAccount(s);
      await A.count();
      const err = await expectError(() => A.create({ name: 'r', email: 'sequelize-r@test.com' }));
      pgError(err, 'ERROR', '42501', env('TDB_MSG_READ_INSERT'));
    } finally {
      await s.close();
    }
  });

  await check(`project key refused on a tenant: ${env('TDB_MSG_PROJECT_SCOPED')}`, async () => {
    const s = open(env('TDB_URL_PROJECT'));
    try {
      const err = await expectError(() => s.authenticate());
      pgError(err, 'FATAL', '28000', env('TDB_MSG_PROJECT_SCOPED'));
    } finally {
      await s.close();
    }
  });

  await check('pool (max 4): 40 concurrent queries', async () => {
    const counts = await Promise.all(Array.from({ length: 40 }, () => Account.count()));
    assert(counts.every((n) => n === counts[0]), `counts ${counts}`);
  });

  await sequelize.close();
});
