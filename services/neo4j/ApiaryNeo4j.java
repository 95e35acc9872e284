// The Neo4j Community engine (Maven Central org.neo4j:neo4j, see pom.xml) as a loopback server
// speaking Bolt, for scripts/services. Started as
//   NEO4J_PASSWORD=… java -Xmx256m -cp 'lib/*:classes' ApiaryNeo4j HOME PORT
// with data, transaction logs and logs under HOME. Authentication is on; the password of the
// user neo4j is set from NEO4J_PASSWORD at every start. SIGTERM shuts the databases down cleanly.
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.HttpConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.io.ByteUnit;

public final class ApiaryNeo4j {
    public static void main(String[] args) throws Exception {
        if (args.length != 2 || System.getenv("NEO4J_PASSWORD") == null) {
            System.err.println("usage: NEO4J_PASSWORD=... ApiaryNeo4j HOME PORT");
            System.exit(2);
        }
        String password = System.getenv("NEO4J_PASSWORD");
        DatabaseManagementService dbms = new DatabaseManagementServiceBuilder(Path.of(args[0]))
                .setConfig(BoltConnector.enabled, true)
                .setConfig(BoltConnector.listen_address, new SocketAddress("127.0.0.1", Integer.parseInt(args[1])))
                .setConfig(BoltConnector.encryption_level, BoltConnector.EncryptionLevel.DISABLED)
                .setConfig(HttpConnector.enabled, false)
                .setConfig(GraphDatabaseSettings.auth_enabled, true)
                .setConfig(GraphDatabaseSettings.pagecache_memory, ByteUnit.mebiBytes(64))
                .setConfig(GraphDatabaseSettings.udc_enabled, false)
                .build();
        String pidFile = System.getenv("NEO4J_PIDFILE");
        if (pidFile != null) {
            Files.writeString(Path.of(pidFile), ProcessHandle.current().pid() + "\n");
        }
        // Embedded transactions bypass authentication: (re)set the password before clients come.
        try {
            dbms.database(GraphDatabaseSettings.SYSTEM_DATABASE_NAME).executeTransactionally(
                    "ALTER USER neo4j SET PASSWORD $password CHANGE NOT REQUIRED", Map.of("password", password));
        } catch (RuntimeException e) {
            if (!String.valueOf(e.getMessage()).contains("cannot be the same")) {  // already this password
                e.printStackTrace();
                dbms.shutdown();
                System.exit(1);
            }
        }
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            System.out.println("apiary-neo4j: shutting down");
            dbms.shutdown();
            stopped.countDown();
        }));
        System.out.println("apiary-neo4j: Bolt on 127.0.0.1:" + args[1] + " (home " + args[0] + ")");
        stopped.await();
    }
}
