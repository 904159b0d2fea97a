package masp.example;

import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.ByteArrayOutputStream;
import java.io.Closeable;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.math.BigDecimal;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.URI;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/**
 * A minimal AMQP 0-9-1 client: one connection, one channel, no heartbeats, no TLS.
 *
 * <p>Enough for an agency: declare, bind and delete a queue, consume with manual
 * acknowledgement, publish with properties (and, after {@link #confirmSelect()}, wait for the
 * broker's confirm). A reader thread turns frames into {@link Incoming} items (a method, or a
 * whole message: method + content header + body); the calling thread waits on them. Anything
 * the server closes (channel or connection) is raised as an {@link AmqpException} carrying its
 * reply code and text, e.g. 403 ACCESS_REFUSED or 404 NOT_FOUND.
 */
public final class Amqp implements Closeable {

    /** The basic-class message properties (AMQP 0-9-1 section 1.8.x, "basic" class). */
    public static final class Properties {
        public String contentType;
        public String contentEncoding;
        public Map<String, Object> headers;
        public Integer deliveryMode; // 1 transient, 2 persistent
        public Integer priority;
        public String correlationId;
        public String replyTo;
        public String expiration;
        public String messageId;
        public Long timestamp;
        public String type;
        public String userId;
        public String appId;

        @Override
        public String toString() {
            return "Properties{contentType=" + contentType + ", deliveryMode=" + deliveryMode
                    + ", correlationId=" + correlationId + ", replyTo=" + replyTo
                    + ", messageId=" + messageId + ", type=" + type + ", userId=" + userId
                    + ", appId=" + appId + ", headers=" + headers + "}";
        }
    }

    /** A message the server delivered (basic.deliver, basic.get-ok) or returned (basic.return). */
    public static final class Message {
        public final String consumerTag;
        public final long deliveryTag;
        public final boolean redelivered;
        public final String exchange;
        public final String routingKey;
        public final Properties properties;
        public final byte[] body;

        Message(String consumerTag, long deliveryTag, boolean redelivered, String exchange,
                String routingKey, Properties properties, byte[] body) {
            this.consumerTag = consumerTag;
            this.deliveryTag = deliveryTag;
            this.redelivered = redelivered;
            this.exchange = exchange;
            this.routingKey = routingKey;
            this.properties = properties;
            this.body = body;
        }

        public String bodyText() {
            return new String(body, StandardCharsets.UTF_8);
        }
    }

    /** The server closed the channel or the connection. */
    public static final class AmqpException extends IOException {
        private static final long serialVersionUID = 1L;
        public final int replyCode;
        public final String replyText;

        AmqpException(int replyCode, String replyText) {
            super(replyCode + " " + replyText);
            this.replyCode = replyCode;
            this.replyText = replyText;
        }
    }

    /** What the reader thread hands over: a method frame, with its content if it has one. */
    private static final class Incoming {
        final int channel;
        final int classId;
        final int methodId;
        final Reader args;
        Properties properties;
        byte[] body;
        final IOException failure;

        Incoming(int channel, int classId, int methodId, Reader args) {
            this.channel = channel;
            this.classId = classId;
            this.methodId = methodId;
            this.args = args;
            this.failure = null;
        }

        Incoming(IOException failure) {
            this.channel = 0;
            this.classId = 0;
            this.methodId = 0;
            this.args = null;
            this.failure = failure;
        }

        boolean is(int c, int m) {
            return classId == c && methodId == m;
        }
    }

    private static final int FRAME_METHOD = 1;
    private static final int FRAME_HEADER = 2;
    private static final int FRAME_BODY = 3;
    private static final int FRAME_HEARTBEAT = 8;
    private static final int FRAME_END = 0xCE;
    private static final int CH = 1; // the one channel we use

    private final Socket socket;
    private final DataInputStream in;
    private final DataOutputStream out;
    private final BlockingQueue<Incoming> replies = new LinkedBlockingQueue<>();
    private final BlockingQueue<Incoming> deliveries = new LinkedBlockingQueue<>();
    private final Thread reader;
    private int frameMax = 131072;
    private volatile boolean closing;
    private volatile AmqpException closedBy;
    private long publishSeq = -1; // -1: confirms off; after confirm.select: the last publish's number

    private Amqp(Socket socket) throws IOException {
        this.socket = socket;
        this.in = new DataInputStream(new BufferedInputStream(socket.getInputStream()));
        this.out = new DataOutputStream(new BufferedOutputStream(socket.getOutputStream()));
        this.reader = new Thread(this::readLoop, "amqp-reader");
        this.reader.setDaemon(true);
    }

    // ------------------------------------------------------------ connecting

    /** Connects to {@code amqp://user:pass@host:port/vhost} and opens channel 1. */
    public static Amqp connect(String url) throws IOException {
        URI u = URI.create(url);
        if (!"amqp".equals(u.getScheme())) {
            throw new IOException("only amqp:// URLs are supported (no TLS in this client)");
        }
        String user = "guest";
        String pass = "guest";
        if (u.getRawUserInfo() != null) {
            String[] up = u.getRawUserInfo().split(":", 2);
            user = URLDecoder.decode(up[0], StandardCharsets.UTF_8);
            pass = up.length > 1 ? URLDecoder.decode(up[1], StandardCharsets.UTF_8) : "";
        }
        String host = u.getHost() == null ? "127.0.0.1" : u.getHost();
        int port = u.getPort() == -1 ? 5672 : u.getPort();
        // The path is the vhost, percent-encoded ("/%2F" is the vhost "/"); empty means "/".
        String path = u.getRawPath();
        String vhost = (path == null || path.isEmpty() || path.equals("/"))
                ? "/" : URLDecoder.decode(path.substring(1), StandardCharsets.UTF_8);

        Socket s = new Socket();
        s.connect(new InetSocketAddress(host, port), 10_000);
        s.setTcpNoDelay(true);
        Amqp c = new Amqp(s);
        try {
            c.handshake(user, pass, vhost);
        } catch (IOException | RuntimeException e) {
            s.close();
            throw e;
        }
        return c;
    }

    private void handshake(String user, String pass, String vhost) throws IOException {
        out.write(new byte[] {'A', 'M', 'Q', 'P', 0, 0, 9, 1});
        out.flush();
        reader.start();

        Incoming start = await(0, 10, 10); // connection.start
        int major = start.args.octet();
        int minor = start.args.octet();
        start.args.table(); // server properties
        String mechanisms = start.args.longstrText();
        if (major != 0 || minor != 9 || !(" " + mechanisms + " ").contains(" PLAIN ")) {
            throw new IOException("server does not speak AMQP 0-9 with PLAIN: " + mechanisms);
        }
        Map<String, Object> caps = new LinkedHashMap<>();
        caps.put("publisher_confirms", true);
        caps.put("basic.nack", true);
        caps.put("consumer_cancel_notify", true);
        caps.put("connection.blocked", false);
        Map<String, Object> props = new LinkedHashMap<>();
        props.put("product", "masp-java-example");
        props.put("platform", "Java " + System.getProperty("java.version"));
        props.put("capabilities", caps);
        Writer w = new Writer(10, 11); // connection.start-ok
        w.table(props).shortstr("PLAIN")
                .longstr(("\0" + user + "\0" + pass).getBytes(StandardCharsets.UTF_8))
                .shortstr("en_US");
        send(0, w);

        Incoming tune = await(0, 10, 30); // connection.tune (a 403 here means bad credentials)
        int channelMax = tune.args.shortInt();
        int serverFrameMax = (int) tune.args.longInt();
        tune.args.shortInt(); // the server's heartbeat proposal; we answer 0: none
        if (serverFrameMax != 0) {
            frameMax = Math.min(frameMax, serverFrameMax);
        }
        send(0, new Writer(10, 31).shortInt(channelMax == 0 ? 1 : Math.min(channelMax, 1))
                .longInt(frameMax).shortInt(0)); // connection.tune-ok

        send(0, new Writer(10, 40).shortstr(vhost).shortstr("").bits(false)); // connection.open
        await(0, 10, 41);
        send(CH, new Writer(20, 10).shortstr("")); // channel.open
        await(CH, 20, 11);
    }

    @Override
    public void close() throws IOException {
        if (closing) {
            return;
        }
        closing = true;
        try {
            if (closedBy == null) {
                send(0, new Writer(10, 50).shortInt(200).shortstr("bye").shortInt(0).shortInt(0));
                poll(replies, 2000, 0, 10, 51);
            }
        } catch (IOException e) {
            // closing anyway
        } finally {
            socket.close();
        }
    }

    // ------------------------------------------------------------ operations

    /** basic.qos: at most {@code prefetch} unacknowledged deliveries at a time on this channel. */
    public void qos(int prefetch) throws IOException {
        send(CH, new Writer(60, 10).longInt(0).shortInt(prefetch).bits(false));
        await(CH, 60, 11);
    }

    /**
     * queue.declare; returns the queue's name (the server's choice when {@code name} is empty).
     * {@code passive} only checks that it exists (404 NOT_FOUND otherwise).
     */
    public String queueDeclare(String name, boolean passive, boolean durable, boolean exclusive,
            boolean autoDelete, Map<String, Object> arguments) throws IOException {
        Writer w = new Writer(50, 10).shortInt(0).shortstr(name)
                .bits(passive, durable, exclusive, autoDelete, false).table(arguments);
        send(CH, w);
        Incoming ok = await(CH, 50, 11);
        return ok.args.shortstr();
    }

    /** queue.declare passive: how many ready messages a queue holds (404 NOT_FOUND if none). */
    public long messageCount(String name) throws IOException {
        send(CH, new Writer(50, 10).shortInt(0).shortstr(name)
                .bits(true, false, false, false, false).table(null));
        Reader ok = await(CH, 50, 11).args;
        ok.shortstr();
        return ok.longInt();
    }

    /** queue.bind. */
    public void queueBind(String queue, String exchange, String routingKey) throws IOException {
        send(CH, new Writer(50, 20).shortInt(0).shortstr(queue).shortstr(exchange)
                .shortstr(routingKey).bits(false).table(null));
        await(CH, 50, 21);
    }

    /** queue.delete; returns how many messages it still held. */
    public long queueDelete(String queue) throws IOException {
        send(CH, new Writer(50, 40).shortInt(0).shortstr(queue).bits(false, false, false));
        return await(CH, 50, 41).args.longInt();
    }

    /** basic.consume with manual acknowledgement; returns the consumer tag. */
    public String consume(String queue) throws IOException {
        send(CH, new Writer(60, 20).shortInt(0).shortstr(queue).shortstr("")
                .bits(false, false, false, false).table(null));
        return await(CH, 60, 21).args.shortstr();
    }

    /** basic.cancel. */
    public void cancel(String consumerTag) throws IOException {
        send(CH, new Writer(60, 30).shortstr(consumerTag).bits(false));
        await(CH, 60, 31);
    }

    /** The next delivery to any consumer on this channel, or null after {@code timeoutMs}. */
    public Message nextDelivery(long timeoutMs) throws IOException {
        Incoming d;
        try {
            d = deliveries.poll(timeoutMs, TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted");
        }
        if (d == null) {
            if (closedBy != null) {
                throw closedBy;
            }
            return null;
        }
        if (d.failure != null) {
            throw d.failure;
        }
        Reader a = d.args;
        String tag = a.shortstr();
        long deliveryTag = a.longlong();
        boolean redelivered = (a.octet() & 1) != 0;
        return new Message(tag, deliveryTag, redelivered, a.shortstr(), a.shortstr(),
                d.properties, d.body);
    }

    /** basic.ack. */
    public void ack(long deliveryTag) throws IOException {
        send(CH, new Writer(60, 80).longlong(deliveryTag).bits(false));
    }

    /** basic.reject; {@code requeue=false} dead-letters the message (if its queue has a DLX). */
    public void reject(long deliveryTag, boolean requeue) throws IOException {
        send(CH, new Writer(60, 90).longlong(deliveryTag).bits(requeue));
    }

    /** basic.nack; {@code requeue=false} dead-letters the message (if its queue has a DLX). */
    public void nack(long deliveryTag, boolean requeue) throws IOException {
        send(CH, new Writer(60, 120).longlong(deliveryTag).bits(false, requeue));
    }

    /** confirm.select: from now on the server confirms each publish (see {@link #publish}). */
    public void confirmSelect() throws IOException {
        send(CH, new Writer(85, 10).bits(false));
        await(CH, 85, 11);
        publishSeq = 0;
    }

    /**
     * basic.publish. With {@code mandatory}, an unroutable message comes back (basic.return)
     * and, once confirms are on, this method throws instead of returning normally. After
     * {@link #confirmSelect()} it waits for the server's basic.ack (or throws on basic.nack).
     */
    public void publish(String exchange, String routingKey, boolean mandatory, Properties props,
            byte[] body) throws IOException {
        Writer m = new Writer(60, 40).shortInt(0).shortstr(exchange).shortstr(routingKey)
                .bits(mandatory, false);
        synchronized (out) {
            writeFrame(FRAME_METHOD, CH, m.bytes());
            writeFrame(FRAME_HEADER, CH, contentHeader(props, body.length));
            int max = frameMax - 8; // 7 bytes of header + the frame-end octet
            for (int off = 0; off < body.length; off += max) {
                int n = Math.min(max, body.length - off);
                byte[] chunk = new byte[n];
                System.arraycopy(body, off, chunk, 0, n);
                writeFrame(FRAME_BODY, CH, chunk);
            }
            out.flush();
        }
        if (publishSeq < 0) {
            return;
        }
        long seq = ++publishSeq;
        // Wait for the confirm that covers seq; a basic.return (if any) arrives before it.
        while (true) {
            Incoming r = take(replies, 30_000);
            if (r.is(60, 50)) { // basic.return
                int code = r.args.shortInt();
                String text = r.args.shortstr();
                throw new AmqpException(code, text + " (message returned: unroutable)");
            }
            if (r.is(60, 80) || r.is(60, 120)) {
                long tag = r.args.longlong();
                boolean multiple = (r.args.octet() & 1) != 0;
                if (tag == seq || (multiple && tag >= seq)) {
                    if (r.is(60, 120)) {
                        throw new IOException("publish nacked by the server");
                    }
                    return;
                }
                continue; // a confirm for an earlier publish
            }
            throw new IOException("unexpected method " + r.classId + "." + r.methodId);
        }
    }

    // ------------------------------------------------------------ frames out

    private void send(int channel, Writer w) throws IOException {
        synchronized (out) {
            writeFrame(FRAME_METHOD, channel, w.bytes());
            out.flush();
        }
    }

    private void writeFrame(int type, int channel, byte[] payload) throws IOException {
        out.writeByte(type);
        out.writeShort(channel);
        out.writeInt(payload.length);
        out.write(payload);
        out.writeByte(FRAME_END);
    }

    private static byte[] contentHeader(Properties p, long bodySize) throws IOException {
        if (p == null) {
            p = new Properties();
        }
        int flags = 0;
        Writer w = new Writer();
        if (p.contentType != null) { flags |= 1 << 15; w.shortstr(p.contentType); }
        if (p.contentEncoding != null) { flags |= 1 << 14; w.shortstr(p.contentEncoding); }
        if (p.headers != null) { flags |= 1 << 13; w.table(p.headers); }
        if (p.deliveryMode != null) { flags |= 1 << 12; w.octet(p.deliveryMode); }
        if (p.priority != null) { flags |= 1 << 11; w.octet(p.priority); }
        if (p.correlationId != null) { flags |= 1 << 10; w.shortstr(p.correlationId); }
        if (p.replyTo != null) { flags |= 1 << 9; w.shortstr(p.replyTo); }
        if (p.expiration != null) { flags |= 1 << 8; w.shortstr(p.expiration); }
        if (p.messageId != null) { flags |= 1 << 7; w.shortstr(p.messageId); }
        if (p.timestamp != null) { flags |= 1 << 6; w.longlong(p.timestamp); }
        if (p.type != null) { flags |= 1 << 5; w.shortstr(p.type); }
        if (p.userId != null) { flags |= 1 << 4; w.shortstr(p.userId); }
        if (p.appId != null) { flags |= 1 << 3; w.shortstr(p.appId); }
        Writer h = new Writer();
        h.shortInt(60).shortInt(0).longlong(bodySize).shortInt(flags);
        h.raw(w.bytes());
        return h.bytes();
    }

    private static Properties readProperties(Reader r) throws IOException {
        int flags = r.shortInt();
        if ((flags & 1) != 0) {
            throw new IOException("continued property flags are not supported");
        }
        Properties p = new Properties();
        if ((flags & (1 << 15)) != 0) p.contentType = r.shortstr();
        if ((flags & (1 << 14)) != 0) p.contentEncoding = r.shortstr();
        if ((flags & (1 << 13)) != 0) p.headers = r.table();
        if ((flags & (1 << 12)) != 0) p.deliveryMode = r.octet();
        if ((flags & (1 << 11)) != 0) p.priority = r.octet();
        if ((flags & (1 << 10)) != 0) p.correlationId = r.shortstr();
        if ((flags & (1 << 9)) != 0) p.replyTo = r.shortstr();
        if ((flags & (1 << 8)) != 0) p.expiration = r.shortstr();
        if ((flags & (1 << 7)) != 0) p.messageId = r.shortstr();
        if ((flags & (1 << 6)) != 0) p.timestamp = r.longlong();
        if ((flags & (1 << 5)) != 0) p.type = r.shortstr();
        if ((flags & (1 << 4)) != 0) p.userId = r.shortstr();
        if ((flags & (1 << 3)) != 0) p.appId = r.shortstr();
        return p;
    }

    // ------------------------------------------------------------ frames in

    /** The reader thread: frames to Incoming items, content assembled, closes answered. */
    private void readLoop() {
        Incoming pending = null; // a method waiting for its content header and body
        ByteArrayOutputStream body = null;
        long bodySize = 0;
        try {
            while (true) {
                int type = in.readUnsignedByte();
                int channel = in.readUnsignedShort();
                int size = in.readInt();
                byte[] payload = new byte[size];
                in.readFully(payload);
                if (in.readUnsignedByte() != FRAME_END) {
                    throw new IOException("bad frame end");
                }
                if (type == FRAME_HEARTBEAT) {
                    continue;
                }
                Reader r = new Reader(payload);
                if (type == FRAME_METHOD) {
                    Incoming m = new Incoming(channel, r.shortInt(), r.shortInt(), r);
                    if (m.is(60, 60) || m.is(60, 71) || m.is(60, 50)) {
                        pending = m; // deliver, get-ok, return: content follows
                        continue;
                    }
                    if (m.is(10, 50) || m.is(20, 40)) { // connection.close / channel.close
                        int code = r.shortInt();
                        String text = r.shortstr();
                        closedBy = new AmqpException(code, text);
                        synchronized (out) {
                            writeFrame(FRAME_METHOD, channel,
                                    new Writer(m.classId, m.methodId + 1).bytes()); // close-ok
                            out.flush();
                        }
                        replies.add(new Incoming(closedBy));
                        deliveries.add(new Incoming(closedBy));
                        if (m.classId == 10) {
                            return;
                        }
                        continue;
                    }
                    replies.add(m);
                } else if (type == FRAME_HEADER) {
                    if (pending == null) {
                        throw new IOException("content header without a method");
                    }
                    r.shortInt(); // class
                    r.shortInt(); // weight
                    bodySize = r.longlong();
                    pending.properties = readProperties(r);
                    body = new ByteArrayOutputStream((int) Math.min(bodySize, 1 << 20));
                    if (bodySize == 0) {
                        pending.body = new byte[0];
                        deliverPending(pending);
                        pending = null;
                    }
                } else if (type == FRAME_BODY) {
                    if (pending == null || body == null) {
                        throw new IOException("content body without a header");
                    }
                    body.write(payload);
                    if (body.size() >= bodySize) {
                        pending.body = body.toByteArray();
                        deliverPending(pending);
                        pending = null;
                        body = null;
                    }
                }
            }
        } catch (IOException e) {
            IOException failure = closedBy != null ? closedBy
                    : closing ? new EOFException("connection closed") : e;
            replies.add(new Incoming(failure));
            deliveries.add(new Incoming(failure));
        }
    }

    private void deliverPending(Incoming m) {
        if (m.is(60, 60)) {
            deliveries.add(m);
        } else {
            replies.add(m); // get-ok and return are answers to what the caller is waiting on
        }
    }

    private Incoming await(int channel, int classId, int methodId) throws IOException {
        Incoming r = poll(replies, 30_000, channel, classId, methodId);
        if (r == null) {
            throw new IOException("timed out waiting for " + classId + "." + methodId);
        }
        return r;
    }

    private Incoming poll(BlockingQueue<Incoming> q, long timeoutMs, int channel, int classId,
            int methodId) throws IOException {
        long deadline = System.currentTimeMillis() + timeoutMs;
        while (true) {
            long left = deadline - System.currentTimeMillis();
            if (left <= 0) {
                return null;
            }
            Incoming r = take(q, left);
            if (r.is(classId, methodId) && r.channel == channel) {
                return r;
            }
            // Anything else here (a stray confirm, say) is not what we wait for: skip it.
        }
    }

    private Incoming take(BlockingQueue<Incoming> q, long timeoutMs) throws IOException {
        Incoming r;
        try {
            r = q.poll(timeoutMs, TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted");
        }
        if (r == null) {
            throw new IOException("timed out waiting for the server");
        }
        if (r.failure != null) {
            q.add(r); // keep the failure visible to later calls
            throw r.failure;
        }
        return r;
    }

    // ------------------------------------------------------------ encoding

    /** Builds a method frame payload (or any AMQP-encoded field list). */
    static final class Writer {
        private final ByteArrayOutputStream buf = new ByteArrayOutputStream();
        private final DataOutputStream d = new DataOutputStream(buf);

        Writer() {
        }

        Writer(int classId, int methodId) throws IOException {
            d.writeShort(classId);
            d.writeShort(methodId);
        }

        byte[] bytes() {
            return buf.toByteArray();
        }

        Writer raw(byte[] b) throws IOException {
            d.write(b);
            return this;
        }

        Writer octet(int v) throws IOException {
            d.writeByte(v);
            return this;
        }

        Writer shortInt(int v) throws IOException {
            d.writeShort(v);
            return this;
        }

        Writer longInt(long v) throws IOException {
            d.writeInt((int) v);
            return this;
        }

        Writer longlong(long v) throws IOException {
            d.writeLong(v);
            return this;
        }

        /** Consecutive bit fields pack into one octet, first bit lowest. */
        Writer bits(boolean... bits) throws IOException {
            int v = 0;
            for (int k = 0; k < bits.length; k++) {
                if (bits[k]) {
                    v |= 1 << k;
                }
            }
            d.writeByte(v);
            return this;
        }

        Writer shortstr(String s) throws IOException {
            byte[] b = s.getBytes(StandardCharsets.UTF_8);
            if (b.length > 255) {
                throw new IOException("shortstr longer than 255 bytes");
            }
            d.writeByte(b.length);
            d.write(b);
            return this;
        }

        Writer longstr(byte[] b) throws IOException {
            d.writeInt(b.length);
            d.write(b);
            return this;
        }

        Writer table(Map<String, Object> t) throws IOException {
            Writer inner = new Writer();
            if (t != null) {
                for (Map.Entry<String, Object> e : t.entrySet()) {
                    inner.shortstr(e.getKey());
                    inner.fieldValue(e.getValue());
                }
            }
            return longstr(inner.bytes());
        }

        @SuppressWarnings("unchecked")
        private void fieldValue(Object v) throws IOException {
            if (v == null) {
                d.writeByte('V');
            } else if (v instanceof Boolean) {
                d.writeByte('t');
                d.writeByte((Boolean) v ? 1 : 0);
            } else if (v instanceof Integer) {
                d.writeByte('I');
                d.writeInt((Integer) v);
            } else if (v instanceof Long) {
                d.writeByte('l');
                d.writeLong((Long) v);
            } else if (v instanceof String) {
                d.writeByte('S');
                longstr(((String) v).getBytes(StandardCharsets.UTF_8));
            } else if (v instanceof byte[]) {
                d.writeByte('x');
                longstr((byte[]) v);
            } else if (v instanceof Map) {
                d.writeByte('F');
                table((Map<String, Object>) v);
            } else if (v instanceof List) {
                d.writeByte('A');
                Writer inner = new Writer();
                for (Object o : (List<Object>) v) {
                    inner.fieldValue(o);
                }
                longstr(inner.bytes());
            } else {
                throw new IOException("cannot encode " + v.getClass() + " in a field table");
            }
        }
    }

    /** Reads AMQP-encoded fields from one frame payload. */
    static final class Reader {
        private final byte[] b;
        private int p;

        Reader(byte[] b) {
            this.b = b;
        }

        private void need(int n) throws IOException {
            if (p + n > b.length) {
                throw new IOException("frame too short");
            }
        }

        int octet() throws IOException {
            need(1);
            return b[p++] & 0xff;
        }

        int shortInt() throws IOException {
            need(2);
            int v = ((b[p] & 0xff) << 8) | (b[p + 1] & 0xff);
            p += 2;
            return v;
        }

        long longInt() throws IOException {
            need(4);
            long v = ((long) (b[p] & 0xff) << 24) | ((b[p + 1] & 0xff) << 16)
                    | ((b[p + 2] & 0xff) << 8) | (b[p + 3] & 0xff);
            p += 4;
            return v;
        }

        long longlong() throws IOException {
            return (longInt() << 32) | longInt();
        }

        String shortstr() throws IOException {
            int n = octet();
            need(n);
            String s = new String(b, p, n, StandardCharsets.UTF_8);
            p += n;
            return s;
        }

        byte[] longstr() throws IOException {
            long n = longInt();
            need((int) n);
            byte[] s = new byte[(int) n];
            System.arraycopy(b, p, s, 0, (int) n);
            p += (int) n;
            return s;
        }

        String longstrText() throws IOException {
            return new String(longstr(), StandardCharsets.UTF_8);
        }

        Map<String, Object> table() throws IOException {
            Reader t = new Reader(longstr());
            Map<String, Object> m = new LinkedHashMap<>();
            while (t.p < t.b.length) {
                String k = t.shortstr();
                m.put(k, t.fieldValue());
            }
            return m;
        }

        /** Field values as RabbitMQ encodes them (its errata to the 0-9-1 table types). */
        private Object fieldValue() throws IOException {
            int type = octet();
            switch (type) {
                case 't': return octet() != 0;
                case 'b': return (int) (byte) octet();
                case 'B': return octet();
                case 's': return (int) (short) shortInt();
                case 'u': return shortInt();
                case 'I': return (int) longInt();
                case 'i': return longInt();
                case 'l': return longlong();
                case 'f': return Float.intBitsToFloat((int) longInt());
                case 'd': return Double.longBitsToDouble(longlong());
                case 'D': {
                    int scale = octet();
                    return BigDecimal.valueOf((int) longInt(), scale);
                }
                case 'S': return longstrText();
                case 'x': return longstr();
                case 'T': return longlong();
                case 'F': return table();
                case 'A': {
                    Reader a = new Reader(longstr());
                    List<Object> list = new ArrayList<>();
                    while (a.p < a.b.length) {
                        list.add(a.fieldValue());
                    }
                    return list;
                }
                case 'V': return null;
                default:
                    throw new IOException("unknown field type '" + (char) type + "'");
            }
        }
    }
}
