// Prisma Client through @prisma/adapter-pg (node-postgres) through tdb. Run by
// TestDrivers after `prisma generate` (drivers/README.md).
'use strict';

const { env, check, assert, expectError, main } = require('./check');

process.env.DATABASE_URL = env('TDB_URL');
const ROWS = Number(env('TDB_ROWS'));

// The seed's client setup, verbatim.
const { PrismaClient } = require('@prisma/client')
const { PrismaPg } = require('@prisma/adapter-pg')
const { Pool } = require('pg')

function open(connectionString, extra = {}) {
  const pool = new Pool({ connectionString, max: 4, maxLifetimeSeconds: 1500, ...extra });
  return new PrismaClient({ adapter: new PrismaPg(pool) });
}

// prismaError checks that a Prisma error carries PostgreSQL's message and
// SQLSTATE (the adapter keeps both; Prisma's own message wraps them).
function prismaError(err, code, message) {
  const text = `${err && err.message} ${JSON.stringify(err && err.meta)} ${err && err.cause}`;
  assert(text.includes(message), `error does not carry ${JSON.stringify(message)}: ${err && err.stack}\nmeta ${JSON.stringify(err && err.meta)}`);
  assert(text.includes(code), `error does not carry SQLSTATE ${code}: ${err && err.stack}\nmeta ${JSON.stringify(err && err.meta)}`);
}

main('Prisma', async () => {
  await check('seed example (Pool + PrismaPg adapter, prisma.account.create Alice)', async () => {
    const pool = new Pool({ connectionString: process.env.DATABASE_URL })
    const adapter = new PrismaPg(pool)
    const prisma = new PrismaClient({ adapter })

    await prisma.account.create({
      data: { name: 'Alice', email: 'alice@test.com', balance: 1000 }
    })

    const alice = await prisma.account.findUnique({ where: { email: 'alice@test.com' } });
    assert(alice && alice.balance.toString() === '1000' && alice.createdAt instanceof Date, `Alice read back as ${JSON.stringify(alice)}`);
    await prisma.$disconnect();
  });

  const prisma = open(process.env.DATABASE_URL);

  await check('parameterised queries: 200 creates, 200 findUnique, $queryRaw with a parameter', async () => {
    for (let i = 0; i < 200; i++) {
      await prisma.account.create({ data: { name: `p${i}`, email: `p${i}@test.com`, balance: i } });
    }
    for (let i = 0; i < 200; i++) {
      const a = await prisma.account.findUnique({ where: { email: `p${i}@test.com` } });
      assert(a && Number(a.balance) === i, `p${i}: ${JSON.stringify(a)}`);
    }
    const email = 'p7@test.com';
    const rows = await prisma.$queryRaw`SELECT name FROM accounts WHERE email = ${email}`;
    assert(rows.length === 1 && rows[0].name === 'p7', `rows ${JSON.stringify(rows)}`);
  });

  await check('interactive transaction rolled back leaves nothing', async () => {
    const before = await prisma.account.count();
    await expectError(() => prisma.$transaction(async (tx) => {
      await tx.account.create({ data: { name: 'tx', email: 'tx@test.com' } });
      await tx.account.deleteMany({ where: { name: 'Bob' } });
      throw new Error('roll back');
    }));
    const after = await prisma.account.count();
    assert(before === after, `count ${before} before, ${after} after rollback`);
  });

  await check(`large result (${ROWS} rows via $queryRaw; Prisma has no cursor API, so read whole)`, async () => {
    const rows = await prisma.$queryRaw`SELECT i, repeat('x', 20) AS s FROM generate_series(1, ${ROWS}::int) i`;
    const sum = rows.reduce((a, r) => a + Number(r.i), 0);
    assert(rows.length === ROWS && sum === (ROWS * (ROWS + 1)) / 2, `${rows.length} rows, sum ${sum}`);
  });

  await check(`DDL refused on a tenant: ${env('TDB_MSG_DDL')}`, async () => {
    const err = await expectError(() => prisma.$executeRawUnsafe('CREATE TABLE evil (id int)'));
    prismaError(err, '42501', env('TDB_MSG_DDL'));
    await prisma.account.count();
  });

  await check('statement_timeout (pg Pool option) cancels pg_sleep (57014)', async () => {
    const p = open(process.env.DATABASE_URL, { statement_timeout: 300 });
    try {
      const err = await expectError(() => p.$queryRaw`SELECT pg_sleep(30)`);
      prismaError(err, '57014', 'canceling statement due to statement timeout');
    } finally {
      await p.$disconnect();
    }
  });

  await check('workspace key (scope workspace [myapp], role write) on a tenant of myapp: create', async () => {
    const p = open(env('TDB_URL_WORKSPACE'));
    try {
      await p.account.create({ data: { name: 'ws', email: 'prisma-ws@test.com' } });
    } finally {
      await p.$disconnect();
    }
  });

  await check(`read key: count works, create fails 42501 ${env('TDB_MSG_READ_INSERT')}`, async () => {
    const p = open(env('TDB_URL_READ'));
    try {
      await p.account.count();
      const err = await expectError(() => p.account.create({ data: { name: 'r', email: 'prisma-r@test.com' } }));
      prismaError(err, '42501', env('TDB_MSG_READ_INSERT'));
    } finally {
      await p.$disconnect();
    }
  });

  await check(`project key refused on a tenant: ${env('TDB_MSG_PROJECT_SCOPED')}`, async () => {
    const p = open(env('TDB_URL_PROJECT'));
    try {
      const err = await expectError(() => p.account.count());
      prismaError(err, '28000', env('TDB_MSG_PROJECT_SCOPED'));
    } finally {
      await p.$disconnect();
    }
  });

  await check('pool (pg Pool max 4, maxLifetimeSeconds 1500): 40 concurrent queries', async () => {
    const counts = await Promise.all(Array.from({ length: 40 }, () => prisma.account.count()));
    assert(counts.every((n) => n === counts[0]), `counts ${counts}`);
  });

  await prisma.$disconnect();
});
