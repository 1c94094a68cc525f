// pgJDBC through tdb. Compiled and run by TestDrivers (drivers/README.md) with
// the TDB_* variables set; prints one line per check, exits 1 on any failure.

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.sql.*;
import java.util.Properties;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

import org.postgresql.util.PSQLException;
import org.postgresql.util.ServerErrorMessage;

public class DriverChecks {
    interface Check {
        void run() throws Exception;
    }

    static int passed, failed;

    static void check(String name, Check c) {
        long start = System.nanoTime();
        try {
            c.run();
            passed++;
            System.out.printf("ok   %s (%d ms)%n", name, (System.nanoTime() - start) / 1_000_000);
        } catch (Throwable t) {
            failed++;
            System.out.printf("FAIL %s (%d ms): %s%n", name, (System.nanoTime() - start) / 1_000_000, t);
        }
    }

    static String env(String name) {
        String v = System.getenv(name);
        if (v == null || v.isEmpty()) throw new IllegalStateException(name + " is not set (run through TestDrivers)");
        return v;
    }

    static void expect(boolean cond, String msg) {
        if (!cond) throw new AssertionError(msg);
    }

    /** Checks that e is PostgreSQL's own error with this severity, SQLSTATE and message. */
    static void pgError(SQLException e, String severity, String code, String message) {
        expect(e instanceof PSQLException, "not a PSQLException: " + e);
        ServerErrorMessage m = ((PSQLException) e).getServerErrorMessage();
        expect(m != null, "no server error message: " + e);
        String got = m.getSeverity() + " " + m.getSQLState() + " \"" + m.getMessage() + "\"";
        String want = severity + " " + code + " \"" + message + "\"";
        expect(got.equals(want) && code.equals(e.getSQLState()), "got " + got + ", want " + want);
    }

    interface SQLRunnable {
        void run() throws SQLException;
    }

    static SQLException expectSQLException(SQLRunnable r) {
        try {
            r.run();
        } catch (SQLException e) {
            return e;
        }
        throw new AssertionError("no SQLException");
    }

    static final String URL = env("TDB_JDBC_URL");
    static final String USER = env("TDB_USER");
    static final int ROWS = Integer.parseInt(env("TDB_ROWS"));

    static Connection connect(String password) throws SQLException {
        Properties props = new Properties();
        props.setProperty("user", USER);
        props.setProperty("password", password);
        return DriverManager.getConnection(URL, props);
    }

    static long count(Connection c) throws SQLException {
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT count(*) FROM accounts")) {
            rs.next();
            return rs.getLong(1);
        }
    }

    public static void main(String[] args) throws Exception {
        check("seed example (DriverManager.getConnection(url?sslmode=require, props), SELECT id, name, balance FROM accounts)", () -> {
            ByteArrayOutputStream buf = new ByteArrayOutputStream();
            PrintStream stdout = System.out;
            System.setOut(new PrintStream(buf, true, StandardCharsets.UTF_8));
            try {
                // The seed's example, with the URL, user and password from the environment.
                String url = URL;
                Properties props = new Properties();
                props.setProperty("user", USER);
                props.setProperty("password", env("TDB_TENANT_KEY"));

                try (Connection conn = DriverManager.getConnection(url, props);
                     Statement s = conn.createStatement();
                     ResultSet rs = s.executeQuery("SELECT id, name, balance FROM accounts")) {
                    while (rs.next()) {
                        System.out.printf("%d: %s ($%.2f)%n",
                            rs.getInt("id"), rs.getString("name"), rs.getBigDecimal("balance"));
                    }
                }
            } finally {
                System.setOut(stdout);
            }
            String out = buf.toString(StandardCharsets.UTF_8);
            for (String line : out.split("\n")) System.out.println("     | " + line);
            expect(out.contains(": Bob ($2000.00)"), "printed " + out);
        });

        Connection conn = connect(env("TDB_TENANT_KEY"));

        check("tenant key: the tenant's admin role", () -> {
            try (Statement s = conn.createStatement(); ResultSet rs = s.executeQuery("SELECT current_user")) {
                rs.next();
                expect(rs.getString(1).endsWith("_admin"), "current_user " + rs.getString(1));
            }
        });

        check("PreparedStatement reused 200 times each (server-side after prepareThreshold)", () -> {
            try (PreparedStatement ins = conn.prepareStatement("INSERT INTO accounts (name, email, balance) VALUES (?, ?, ?)");
                 PreparedStatement sel = conn.prepareStatement("SELECT balance FROM accounts WHERE email = ?")) {
                for (int i = 0; i < 200; i++) {
                    ins.setString(1, "p" + i);
                    ins.setString(2, "p" + i + "@test.com");
                    ins.setBigDecimal(3, BigDecimal.valueOf(i));
                    ins.executeUpdate();
                }
                for (int i = 0; i < 200; i++) {
                    sel.setString(1, "p" + i + "@test.com");
                    try (ResultSet rs = sel.executeQuery()) {
                        expect(rs.next() && rs.getBigDecimal(1).intValueExact() == i, "p" + i);
                    }
                }
                expect(ins.unwrap(org.postgresql.PGStatement.class).isUseServerPrepare(), "INSERT not server-prepared");
                try (Statement s = conn.createStatement(); ResultSet rs = s.executeQuery("SELECT count(*) FROM pg_prepared_statements")) {
                    rs.next();
                    expect(rs.getInt(1) >= 2, "pg_prepared_statements has " + rs.getInt(1) + " statements");
                }
            }
        });

        check("transaction rolled back leaves nothing", () -> {
            long before = count(conn);
            conn.setAutoCommit(false);
            try (Statement s = conn.createStatement()) {
                s.executeUpdate("INSERT INTO accounts (name, email) VALUES ('tx', 'tx@test.com')");
                s.executeUpdate("DELETE FROM accounts WHERE name = 'Bob'");
            } finally {
                conn.rollback();
                conn.setAutoCommit(true);
            }
            long after = count(conn);
            expect(before == after, "count " + before + " before, " + after + " after rollback");
        });

        check("large result read with setFetchSize(1000) (portal, " + ROWS + " rows)", () -> {
            conn.setAutoCommit(false); // pgJDBC fetches in batches only inside a transaction
            long n = 0, sum = 0;
            try (PreparedStatement ps = conn.prepareStatement("SELECT i, repeat('x', 20) FROM generate_series(1, ?) i")) {
                ps.setFetchSize(1000);
                ps.setInt(1, ROWS);
                try (ResultSet rs = ps.executeQuery()) {
                    while (rs.next()) {
                        n++;
                        sum += rs.getLong(1);
                    }
                }
            } finally {
                conn.commit();
                conn.setAutoCommit(true);
            }
            expect(n == ROWS && sum == (long) ROWS * (ROWS + 1) / 2, n + " rows, sum " + sum);
        });

        check("DDL refused on a tenant: " + env("TDB_MSG_DDL"), () -> {
            try (Statement s = conn.createStatement()) {
                pgError(expectSQLException(() -> s.execute("CREATE TABLE evil (id int)")), "ERROR", "42501", env("TDB_MSG_DDL"));
            }
            count(conn);
        });

        check("setQueryTimeout(1) cancels pg_sleep (CancelRequest, 57014)", () -> {
            try (Connection c = connect(env("TDB_TENANT_KEY")); Statement s = c.createStatement()) {
                s.setQueryTimeout(1);
                long start = System.nanoTime();
                pgError(expectSQLException(() -> s.execute("SELECT pg_sleep(30)")), "ERROR", "57014", "canceling statement due to user request");
                expect(System.nanoTime() - start < 10_000_000_000L, "cancel took too long");
                expect(c.isValid(2), "connection not valid afterwards");
            }
        });

        check("Statement.cancel() from another thread stops pg_sleep (57014)", () -> {
            ScheduledExecutorService ex = Executors.newSingleThreadScheduledExecutor();
            try (Connection c = connect(env("TDB_TENANT_KEY")); Statement s = c.createStatement()) {
                ex.schedule(() -> { s.cancel(); return null; }, 300, TimeUnit.MILLISECONDS);
                pgError(expectSQLException(() -> s.execute("SELECT pg_sleep(30)")), "ERROR", "57014", "canceling statement due to user request");
            } finally {
                ex.shutdownNow();
            }
        });

        check("options=-c statement_timeout=300 (startup parameter) cancels pg_sleep (57014)", () -> {
            Properties props = new Properties();
            props.setProperty("user", USER);
            props.setProperty("password", env("TDB_TENANT_KEY"));
            props.setProperty("options", "-c statement_timeout=300");
            try (Connection c = DriverManager.getConnection(URL, props); Statement s = c.createStatement()) {
                pgError(expectSQLException(() -> s.execute("SELECT pg_sleep(30)")), "ERROR", "57014", "canceling statement due to statement timeout");
            }
        });

        check("isValid (the pools' pre-ping) on a live and on a terminated session", () -> {
            try (Connection c = connect(env("TDB_TENANT_KEY"))) {
                expect(c.isValid(2), "live connection not valid");
                int pid;
                try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT pg_backend_pid()")) {
                    rs.next();
                    pid = rs.getInt(1);
                }
                try (PreparedStatement ps = conn.prepareStatement("SELECT pg_terminate_backend(?)")) {
                    ps.setInt(1, pid);
                    ps.execute();
                }
                Thread.sleep(300);
                expect(!c.isValid(2), "terminated connection still valid");
            }
        });

        check("workspace key (scope workspace [myapp], role write) on a tenant of myapp: INSERT", () -> {
            try (Connection c = connect(env("TDB_WORKSPACE_KEY")); Statement s = c.createStatement()) {
                s.executeUpdate("INSERT INTO accounts (name, email) VALUES ('ws', 'jdbc-ws@test.com')");
            }
        });

        check("read key: SELECT works, INSERT fails 42501 " + env("TDB_MSG_READ_INSERT"), () -> {
            try (Connection c = connect(env("TDB_READ_KEY")); Statement s = c.createStatement()) {
                count(c);
                pgError(expectSQLException(() -> s.executeUpdate("INSERT INTO accounts (name, email) VALUES ('r', 'jdbc-r@test.com')")),
                    "ERROR", "42501", env("TDB_MSG_READ_INSERT"));
            }
        });

        check("project key refused on a tenant: " + env("TDB_MSG_PROJECT_SCOPED"), () -> {
            pgError(expectSQLException(() -> connect(env("TDB_PROJECT_KEY")).close()), "FATAL", "28000", env("TDB_MSG_PROJECT_SCOPED"));
        });

        conn.close();
        System.out.printf("pgJDBC %s: %d passed checks, %d failed%n", org.postgresql.util.DriverInfo.DRIVER_VERSION, passed, failed);
        System.exit(failed > 0 ? 1 : 0);
    }
}
