// Readiness probe for the local Cassandra node, used by scripts/stack.
//
//   java CqlProbe.java 127.0.0.1:9042 [timeout-ms]
//   (scripts/stack compiles it once and runs the cached class instead)
//
// Speaks the CQL native protocol (v4) directly, so it needs no driver jar and
// nothing from Cassandra's classpath: STARTUP, then QUERY
// "SELECT release_version FROM system.local" at consistency ONE. Ready means
// that query returns a row. Prints the release version.
// Exit status: 0 ready, 1 not ready, 2 usage error.

import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.ByteArrayInputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;

public final class CqlProbe {
    private static final int VERSION = 0x04;
    private static final int OP_ERROR = 0x00;
    private static final int OP_STARTUP = 0x01;
    private static final int OP_READY = 0x02;
    private static final int OP_AUTHENTICATE = 0x03;
    private static final int OP_QUERY = 0x07;
    private static final int OP_RESULT = 0x08;
    private static final int FLAG_WARNING = 0x08;
    private static final int RESULT_ROWS = 0x0002;
    private static final int CONSISTENCY_ONE = 0x0001;
    private static final String QUERY = "SELECT release_version FROM system.local";

    private static final class NotReady extends Exception {
        private static final long serialVersionUID = 1L;

        NotReady(String message) {
            super(message);
        }
    }

    public static void main(String[] args) {
        if (args.length < 1 || args.length > 2) {
            System.err.println("usage: CqlProbe host:port [timeout-ms]");
            System.exit(2);
        }
        int colon = args[0].lastIndexOf(':');
        if (colon <= 0) {
            System.err.println("usage: CqlProbe host:port [timeout-ms]");
            System.exit(2);
        }
        String host = args[0].substring(0, colon);
        int port = Integer.parseInt(args[0].substring(colon + 1));
        int timeoutMs = args.length > 1 ? Integer.parseInt(args[1]) : 5000;

        try (Socket socket = new Socket()) {
            socket.connect(new InetSocketAddress(host, port), timeoutMs);
            socket.setSoTimeout(timeoutMs);
            socket.setTcpNoDelay(true);
            OutputStream out = socket.getOutputStream();
            DataInputStream in = new DataInputStream(socket.getInputStream());

            ByteArrayOutputStream startup = new ByteArrayOutputStream();
            DataOutputStream body = new DataOutputStream(startup);
            body.writeShort(1); // [string map] with one entry
            writeString(body, "CQL_VERSION");
            writeString(body, "3.0.0");
            send(out, 0, OP_STARTUP, startup.toByteArray());
            Frame ready = receive(in);
            if (ready.opcode == OP_AUTHENTICATE) {
                throw new NotReady("server asks for authentication (unexpected for the local stack)");
            }
            expect(ready, OP_READY);

            ByteArrayOutputStream query = new ByteArrayOutputStream();
            body = new DataOutputStream(query);
            byte[] text = QUERY.getBytes(StandardCharsets.UTF_8);
            body.writeInt(text.length); // [long string]
            body.write(text);
            body.writeShort(CONSISTENCY_ONE);
            body.writeByte(0); // no query flags
            send(out, 1, OP_QUERY, query.toByteArray());
            Frame result = receive(in);
            expect(result, OP_RESULT);

            String version = releaseVersion(result.body);
            System.out.println("ready: release_version " + version);
            System.exit(0);
        } catch (NotReady e) {
            System.out.println("not ready: " + e.getMessage());
        } catch (IOException e) {
            System.out.println("not ready: " + e);
        }
        System.exit(1);
    }

    private static final class Frame {
        final int opcode;
        final DataInputStream body;

        Frame(int opcode, DataInputStream body) {
            this.opcode = opcode;
            this.body = body;
        }
    }

    private static void send(OutputStream out, int stream, int opcode, byte[] body) throws IOException {
        ByteArrayOutputStream frame = new ByteArrayOutputStream(9 + body.length);
        DataOutputStream header = new DataOutputStream(frame);
        header.writeByte(VERSION); // request, protocol v4
        header.writeByte(0); // no flags (no compression, no tracing)
        header.writeShort(stream);
        header.writeByte(opcode);
        header.writeInt(body.length);
        header.write(body);
        out.write(frame.toByteArray());
        out.flush();
    }

    private static Frame receive(DataInputStream in) throws IOException, NotReady {
        int version = in.readUnsignedByte();
        int flags = in.readUnsignedByte();
        in.readShort(); // stream id
        int opcode = in.readUnsignedByte();
        int length = in.readInt();
        if ((version & 0x7f) != VERSION) {
            throw new NotReady("server answered with protocol version " + (version & 0x7f));
        }
        if (length < 0 || length > 16 * 1024 * 1024) {
            throw new NotReady("implausible frame length " + length);
        }
        byte[] bytes = new byte[length];
        in.readFully(bytes);
        DataInputStream body = new DataInputStream(new ByteArrayInputStream(bytes));
        if ((flags & FLAG_WARNING) != 0) {
            int warnings = body.readUnsignedShort(); // [string list]
            for (int i = 0; i < warnings; i++) {
                readString(body);
            }
        }
        return new Frame(opcode, body);
    }

    private static void expect(Frame frame, int opcode) throws IOException, NotReady {
        if (frame.opcode == OP_ERROR) {
            int code = frame.body.readInt();
            String message = readString(frame.body);
            throw new NotReady(String.format("server error 0x%04x: %s", code, message));
        }
        if (frame.opcode != opcode) {
            throw new NotReady(String.format("unexpected opcode 0x%02x", frame.opcode));
        }
    }

    private static String releaseVersion(DataInputStream body) throws IOException, NotReady {
        int kind = body.readInt();
        if (kind != RESULT_ROWS) {
            throw new NotReady("result is not rows (kind " + kind + ")");
        }
        int flags = body.readInt();
        int columns = body.readInt();
        if ((flags & 0x0002) != 0) {
            readBytes(body); // paging state
        }
        if ((flags & 0x0004) == 0) { // metadata present
            boolean globalTableSpec = (flags & 0x0001) != 0;
            if (globalTableSpec) {
                readString(body);
                readString(body);
            }
            for (int i = 0; i < columns; i++) {
                if (!globalTableSpec) {
                    readString(body);
                    readString(body);
                }
                readString(body); // column name
                int type = body.readUnsignedShort();
                if (type != 0x000D && type != 0x0001) { // varchar / ascii
                    throw new NotReady("unexpected column type 0x" + Integer.toHexString(type));
                }
            }
        }
        int rows = body.readInt();
        if (rows < 1 || columns < 1) {
            throw new NotReady("system.local returned no row");
        }
        byte[] value = readBytes(body);
        return value == null ? "null" : new String(value, StandardCharsets.UTF_8);
    }

    private static void writeString(DataOutputStream out, String s) throws IOException {
        byte[] bytes = s.getBytes(StandardCharsets.UTF_8);
        out.writeShort(bytes.length);
        out.write(bytes);
    }

    private static String readString(DataInputStream in) throws IOException {
        byte[] bytes = new byte[in.readUnsignedShort()];
        in.readFully(bytes);
        return new String(bytes, StandardCharsets.UTF_8);
    }

    private static byte[] readBytes(DataInputStream in) throws IOException {
        int length = in.readInt();
        if (length < 0) {
            return null;
        }
        byte[] bytes = new byte[length];
        in.readFully(bytes);
        return bytes;
    }
}
