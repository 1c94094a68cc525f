# ruby-pg (libpq's PQprepare and PQexecPrepared) with the unnamed statement:
# prepared in one round trip, executed in the next, with the proxy's own
# statements (the capture lock and its release, the row guard's BEGIN and
# COMMIT) between the two. Run by TestUnnamedStatements (drivers/README.md):
# TDB_URL is the tenant workspace's database, TDB_TENANT_URL a tenant's, both
# with max_rows_per_query set. Prints one line per check, exits 1 on any
# failure.

require 'pg'

$passed = 0
$failed = 0

def env(name)
  v = ENV[name]
  abort "#{name} is not set (run through TestUnnamedStatements)" if v.nil? || v.empty?
  v
end

def check(name)
  yield
  $passed += 1
  puts "ok   #{name}"
rescue StandardError => e
  $failed += 1
  puts "FAIL #{name}: #{e.class}: #{e.message.strip}"
ensure
  $stdout.flush
end

def expect(cond, msg)
  raise msg unless cond
end

ws = PG.connect(env('TDB_URL'))
check('workspace DDL through the unnamed statement (PQprepare "", PQexecPrepared)') do
  ws.prepare('', 'CREATE TABLE unnamed_ddl (id int)')
  ws.exec_prepared('', [])
  ws.prepare('', 'ALTER TABLE unnamed_ddl ADD COLUMN note text')
  ws.exec_prepared('', [])
  n = ws.exec("SELECT count(*) FROM information_schema.columns WHERE table_name = 'unnamed_ddl'").getvalue(0, 0).to_i
  expect(n == 2, "unnamed_ddl has #{n} columns")
end
ws.close

tenant = PG.connect(env('TDB_TENANT_URL'))
check('guarded INSERT … RETURNING through the unnamed statement (PQprepare "", PQexecPrepared)') do
  tenant.prepare('', 'INSERT INTO accounts (name, email) VALUES ($1, $2) RETURNING name')
  3.times do |i|
    got = tenant.exec_prepared('', ["unnamed#{i}", "unnamed#{i}@test.com"]).getvalue(0, 0)
    expect(got == "unnamed#{i}", "RETURNING gave #{got.inspect}")
  end
  n = tenant.exec("SELECT count(*) FROM accounts WHERE name LIKE 'unnamed%'").getvalue(0, 0).to_i
  expect(n == 3, "#{n} rows inserted, want 3")
end
tenant.close

puts "ruby-pg unnamed statements: #{$passed} passed checks, #{$failed} failed"
exit(1) if $failed.positive?
