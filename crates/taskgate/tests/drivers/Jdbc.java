// pgjdbc (Debian's libpostgresql-jdbc-java, defaults) through the gateway:
// the driver's own session setup (SET extra_float_digits, SET
// application_name), metadata calls, a prepared statement past
// prepareThreshold (server-side named statements), a batch, a portal read in
// pages with setFetchSize, setClientInfo("ApplicationName"), and a refusal.
// Run by tests/drivers.rs as `java Jdbc.java` (single-file source launch)
// with CLASSPATH naming the driver's jar. Prints `key=value` lines.

import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

public class Jdbc {
    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://" + System.getenv("TG_HOST") + ":" + System.getenv("TG_PORT")
                + "/" + System.getenv("TG_DB");
        Properties props = new Properties();
        props.setProperty("user", System.getenv("TG_USER"));
        props.setProperty("password", System.getenv("TG_PASSWORD"));
        props.setProperty("sslmode", "disable");
        try (Connection c = DriverManager.getConnection(url, props)) {
            org.postgresql.PGConnection pg = c.unwrap(org.postgresql.PGConnection.class);
            System.out.println("reported_application_name=" + pg.getParameterStatus("application_name"));
            try (Statement s = c.createStatement();
                    ResultSet r = s.executeQuery("SHOW application_name")) {
                r.next();
                System.out.println("server_application_name=" + r.getString(1));
            }

            DatabaseMetaData meta = c.getMetaData();
            System.out.println("product=" + meta.getDatabaseProductName());
            List<String> tables = new ArrayList<>();
            try (ResultSet r = meta.getTables(null, "public", "%", new String[] {"TABLE"})) {
                while (r.next()) {
                    tables.add(r.getString("TABLE_NAME"));
                }
            }
            System.out.println("tables=" + String.join(",", tables));
            List<String> columns = new ArrayList<>();
            try (ResultSet r = meta.getColumns(null, "public", "orders", "%")) {
                while (r.next()) {
                    columns.add(r.getString("COLUMN_NAME"));
                }
            }
            System.out.println("columns=" + String.join(",", columns));

            // Past prepareThreshold (5) the driver names the statement on
            // the server and binds it again and again.
            int found = 0;
            try (PreparedStatement p = c.prepareStatement("SELECT item FROM orders WHERE id = ?")) {
                for (int i = 0; i < 8; i++) {
                    p.setInt(1, 1);
                    try (ResultSet r = p.executeQuery()) {
                        if (r.next()) {
                            found++;
                        }
                    }
                }
            }
            System.out.println("prepared_runs=" + found);

            try (PreparedStatement p = c.prepareStatement("INSERT INTO orders (item, qty) VALUES (?, ?)")) {
                for (int i = 0; i < 3; i++) {
                    p.setString(1, "jdbc-batch-" + i);
                    p.setInt(2, i + 1);
                    p.addBatch();
                }
                int[] counts = p.executeBatch();
                System.out.println("batch=" + counts.length);
            }

            c.setAutoCommit(false);
            int rows = 0;
            try (Statement s = c.createStatement()) {
                s.setFetchSize(2);
                try (ResultSet r = s.executeQuery("SELECT id FROM orders ORDER BY id")) {
                    while (r.next()) {
                        rows++;
                    }
                }
            }
            c.commit();
            c.setAutoCommit(true);
            System.out.println("fetched=" + rows);

            c.setClientInfo("ApplicationName", "flyway-like");
            System.out.println("client_info=" + c.getClientInfo("ApplicationName"));
            System.out.println("reported_after=" + pg.getParameterStatus("application_name"));

            try (Statement s = c.createStatement()) {
                s.execute("DROP TABLE orders");
                System.out.println("refused=none");
            } catch (SQLException e) {
                System.out.println("refused=" + e.getSQLState());
            }
            try (Statement s = c.createStatement(); ResultSet r = s.executeQuery("SELECT 1")) {
                r.next();
                System.out.println("after_refusal=" + r.getInt(1));
            }
        }
    }
}
