// Shared by the Node.js driver programs: one line per check, exit status 1 on
// any failure (drivers/README.md).
'use strict';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run through TestDrivers)`);
  return v;
};

let passed = 0;
let failed = 0;

async function check(name, fn) {
  const start = Date.now();
  try {
    await fn();
    passed++;
    console.log(`ok   ${name} (${Date.now() - start} ms)`);
  } catch (err) {
    failed++;
    console.log(`FAIL ${name} (${Date.now() - start} ms): ${(err && err.stack) || err}`);
  }
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

// expectError returns the error fn rejects with, failing if it resolves.
async function expectError(fn) {
  try {
    await fn();
  } catch (err) {
    return err;
  }
  throw new Error('no error');
}

// pgError checks a node-postgres DatabaseError (or an error wrapping one).
// Knex prefixes the message with the SQL and " - ", which is dropped here.
function pgError(err, severity, code, message, sql) {
  const e = err && (err.original || err.parent || err.cause || err);
  let msg = e && e.message;
  if (sql && typeof msg === 'string' && msg.startsWith(`${sql} - `)) msg = msg.slice(sql.length + 3);
  const got = `${e && e.severity} ${e && e.code} ${JSON.stringify(msg)}`;
  const want = `${severity} ${code} ${JSON.stringify(message)}`;
  assert(got === want, `got ${got} (${err}), want ${want}`);
}

function done(label) {
  console.log(`${label}: ${passed} passed checks, ${failed} failed`);
  process.exit(failed > 0 ? 1 : 0);
}

function main(label, fn) {
  fn().then(() => done(label), (err) => {
    console.log(`FAIL ${label}: ${(err && err.stack) || err}`);
    failed++;
    done(label);
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

module.exports = { env, check, assert, expectError, pgError, main, sleep };
