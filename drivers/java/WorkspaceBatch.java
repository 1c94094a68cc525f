import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.Statement;

/**
 * pgJDBC's executeBatch with DDL behind another statement, in a tenant
 * workspace. Run by TestWorkspaceDDLBatches (drivers/README.md): TDB_JDBC_URL
 * is the workspace's database, TDB_TABLE a table another session is creating
 * in a transaction still open, TDB_MODE autocommit or transaction.
 */
public class WorkspaceBatch {
    public static void main(String[] args) throws Exception {
        String table = System.getenv("TDB_TABLE"), mode = System.getenv("TDB_MODE");
        String name = "pgJDBC executeBatch (" + mode + "): SELECT, then ALTER TABLE and CREATE INDEX on " + table;
        try (Connection c = DriverManager.getConnection(System.getenv("TDB_JDBC_URL"),
                System.getenv("TDB_USER"), System.getenv("TDB_PROJECT_KEY"))) {
            c.setAutoCommit(mode.equals("autocommit"));
            try (Statement st = c.createStatement()) {
                st.addBatch("SELECT 1");
                st.addBatch("ALTER TABLE " + table + " ADD COLUMN c int");
                st.addBatch("CREATE INDEX ON " + table + " (c)");
                st.executeBatch();
            }
            if (!c.getAutoCommit()) {
                c.commit();
            }
            System.out.println("ok   " + name);
        } catch (Exception e) {
            System.out.println("FAIL " + name + ": " + e);
            System.exit(1);
        }
    }
}
