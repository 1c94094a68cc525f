# ruby-pg through tdb. Run by TestDrivers (drivers/README.md) with the TDB_*
# variables set; prints one line per check, exits 1 on any failure.

require 'pg'
require 'stringio'

$passed = 0
$failed = 0

def env(name)
  v = ENV[name]
  abort "#{name} is not set (run through TestDrivers)" if v.nil? || v.empty?
  v
end

def check(name)
  start = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  begin
    yield
    $passed += 1
    puts format('ok   %s (%d ms)', name, (Process.clock_gettime(Process::CLOCK_MONOTONIC) - start) * 1000)
  rescue StandardError, ScriptError => e
    $failed += 1
    puts format('FAIL %s (%d ms): %s: %s', name, (Process.clock_gettime(Process::CLOCK_MONOTONIC) - start) * 1000,
                e.class, e.message.strip)
  end
  $stdout.flush
end

def expect(cond, msg)
  raise msg unless cond
end

# pg_error checks the SQLSTATE and primary message of a PG::Error.
def pg_error(e, code, message)
  got_code = e.result&.error_field(PG::PG_DIAG_SQLSTATE)
  got_msg = e.result&.error_field(PG::PG_DIAG_MESSAGE_PRIMARY)
  expect(got_code == code && got_msg == message, "got #{got_code} #{got_msg.inspect}, want #{code} #{message.inspect}")
end

def raises(klass)
  yield
rescue klass => e
  e
else
  raise "no #{klass} raised"
end

HOST = env('TDB_HOST')
PORT = Integer(env('TDB_PORT'))
DB = env('TDB_DATABASE')
USER = env('TDB_USER')
ROWS = Integer(env('TDB_ROWS'))

def connect(password, **extra)
  PG.connect(host: HOST, port: PORT, dbname: DB, user: USER, password: password, sslmode: 'require', **extra)
end

check('seed example (PG.connect host:, port:, dbname:, user:, password:, sslmode: require; exec with a block)') do
  out = StringIO.new
  stdout = $stdout
  $stdout = out
  begin
    # The seed's example, with the connection details from the environment.
    conn = PG.connect(
      host: HOST,
      port: PORT,
      dbname: DB,
      user: USER,
      password: env('TDB_TENANT_KEY'),
      sslmode: 'require'
    )

    conn.exec('SELECT id, name, balance FROM accounts') do |result|
      result.each { |row| puts row }
    end

    conn.close
  ensure
    $stdout = stdout
  end
  out.string.each_line { |l| puts "     | #{l}" }
  expect(out.string.include?('"name"=>"Bob", "balance"=>"2000.00"'), "printed #{out.string.inspect}")
end

conn = connect(env('TDB_TENANT_KEY'))

check("the session is TLS, as the tenant's admin role") do
  expect(conn.ssl_in_use?, 'not TLS')
  user = conn.exec('SELECT current_user').getvalue(0, 0)
  expect(user.end_with?('_admin'), "current_user #{user}")
end

check('prepare/exec_prepared (server-side) 200 executions each; exec_params 200 times') do
  conn.prepare('ins', 'INSERT INTO accounts (name, email, balance) VALUES ($1, $2, $3)')
  conn.prepare('bal', 'SELECT balance FROM accounts WHERE email = $1')
  200.times { |i| conn.exec_prepared('ins', ["p#{i}", "p#{i}@test.com", i]) }
  200.times do |i|
    expect(conn.exec_prepared('bal', ["p#{i}@test.com"]).getvalue(0, 0).to_f == i, "p#{i}")
    expect(conn.exec_params('SELECT name FROM accounts WHERE email = $1', ["p#{i}@test.com"]).getvalue(0, 0) == "p#{i}", "p#{i}")
  end
  n = conn.exec("SELECT count(*) FROM pg_prepared_statements WHERE name IN ('ins', 'bal')").getvalue(0, 0).to_i
  expect(n == 2, "pg_prepared_statements has #{n} of ins, bal")
end

check('transaction rolled back leaves nothing') do
  before = conn.exec('SELECT count(*) FROM accounts').getvalue(0, 0)
  begin
    conn.transaction do |c|
      c.exec_params('INSERT INTO accounts (name, email) VALUES ($1, $2)', %w[tx tx@test.com])
      c.exec("DELETE FROM accounts WHERE name = 'Bob'")
      raise ArgumentError, 'roll back'
    end
  rescue ArgumentError
    nil
  end
  after = conn.exec('SELECT count(*) FROM accounts').getvalue(0, 0)
  expect(before == after, "count #{before} before, #{after} after rollback")
end

check("large result in single-row mode (set_single_row_mode, #{ROWS} rows)") do
  conn.send_query_params("SELECT i, repeat('x', 20) FROM generate_series(1, $1::int) i", [ROWS])
  conn.set_single_row_mode
  n = 0
  sum = 0
  while (res = conn.get_result)
    res.check
    res.each_row do |i, _s|
      n += 1
      sum += i.to_i
    end
    res.clear
  end
  expect(n == ROWS && sum == ROWS * (ROWS + 1) / 2, "#{n} rows, sum #{sum}")
end

check("DDL refused on a tenant: #{env('TDB_MSG_DDL')}") do
  e = raises(PG::InsufficientPrivilege) { conn.exec('CREATE TABLE evil (id int)') }
  pg_error(e, '42501', env('TDB_MSG_DDL'))
  conn.exec('SELECT 1')
end

check('conn.cancel from another thread stops pg_sleep (CancelRequest, 57014)') do
  c = connect(env('TDB_TENANT_KEY'))
  Thread.new do
    sleep 0.3
    c.cancel
  end
  start = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  e = raises(PG::QueryCanceled) { c.exec('SELECT pg_sleep(30)') }
  expect(Process.clock_gettime(Process::CLOCK_MONOTONIC) - start < 10, 'cancel took too long')
  pg_error(e, '57014', 'canceling statement due to user request')
  c.close
end

check("options: '-c statement_timeout=300' (startup parameter) cancels pg_sleep (57014)") do
  c = connect(env('TDB_TENANT_KEY'), options: '-c statement_timeout=300')
  e = raises(PG::QueryCanceled) { c.exec('SELECT pg_sleep(30)') }
  pg_error(e, '57014', 'canceling statement due to statement timeout')
  c.close
end

check('workspace key (scope workspace [myapp], role write) on a tenant of myapp: INSERT') do
  c = connect(env('TDB_WORKSPACE_KEY'))
  c.exec_params('INSERT INTO accounts (name, email) VALUES ($1, $2)', %w[ws rubypg-ws@test.com])
  c.close
end

check("read key: SELECT works, INSERT fails 42501 #{env('TDB_MSG_READ_INSERT')}") do
  c = connect(env('TDB_READ_KEY'))
  c.exec('SELECT count(*) FROM accounts')
  e = raises(PG::InsufficientPrivilege) do
    c.exec_params('INSERT INTO accounts (name, email) VALUES ($1, $2)', %w[r rubypg-r@test.com])
  end
  pg_error(e, '42501', env('TDB_MSG_READ_INSERT'))
  c.close
end

check("project key refused on a tenant: #{env('TDB_MSG_PROJECT_SCOPED')}") do
  e = raises(PG::ConnectionBad) { connect(env('TDB_PROJECT_KEY')) }
  expect(e.message.include?("FATAL:  #{env('TDB_MSG_PROJECT_SCOPED')}"), e.message)
end

conn.close
puts "ruby-pg #{PG::VERSION}: #{$passed} passed checks, #{$failed} failed"
exit($failed.zero? ? 0 : 1)
