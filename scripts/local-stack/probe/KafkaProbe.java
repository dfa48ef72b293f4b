// Readiness probe for the local Kafka broker, used by scripts/stack.
//
//   java -cp '<kafka lib>/*' KafkaProbe.java 127.0.0.1:9092 [timeout-ms]
//   (scripts/stack compiles it once and runs the cached class instead)
//
// Ready means: a metadata request (Admin describeCluster) answers within the
// timeout and lists at least one broker, i.e. the broker is registered and
// unfenced, not merely that its socket accepts connections.
// Exit status: 0 ready, 1 not ready, 2 usage error.

import java.time.Duration;
import java.util.Collection;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterOptions;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.common.Node;

public final class KafkaProbe {
    public static void main(String[] args) {
        if (args.length < 1 || args.length > 2) {
            System.err.println("usage: KafkaProbe host:port [timeout-ms]");
            System.exit(2);
        }
        int timeoutMs = args.length > 1 ? Integer.parseInt(args[1]) : 5000;

        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(AdminClientConfig.CLIENT_ID_CONFIG, "galley-stack-probe");
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, timeoutMs);
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, timeoutMs);
        props.put(AdminClientConfig.RETRY_BACKOFF_MS_CONFIG, 100);
        props.put(AdminClientConfig.RECONNECT_BACKOFF_MS_CONFIG, 100);
        props.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, 500);

        int status = 1;
        Admin admin = null;
        try {
            admin = Admin.create(props);
            DescribeClusterResult cluster =
                admin.describeCluster(new DescribeClusterOptions().timeoutMs(timeoutMs));
            Collection<Node> nodes = cluster.nodes().get(timeoutMs, TimeUnit.MILLISECONDS);
            String clusterId = cluster.clusterId().get(timeoutMs, TimeUnit.MILLISECONDS);
            if (nodes.isEmpty()) {
                System.out.println("not ready: metadata lists no broker yet");
            } else {
                System.out.println("ready: cluster " + clusterId + ", " + nodes.size() + " broker(s)");
                status = 0;
            }
        } catch (ExecutionException e) {
            System.out.println("not ready: " + e.getCause());
        } catch (Exception e) {
            System.out.println("not ready: " + e);
        } finally {
            if (admin != null) {
                admin.close(Duration.ZERO);
            }
        }
        System.exit(status);
    }
}
