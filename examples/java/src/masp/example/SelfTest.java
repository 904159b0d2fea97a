package masp.example;

import static masp.example.Checks.check;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.UUID;

/**
 * Checks the primitives against published test vectors, and the AMQP client against a real
 * RabbitMQ (MASP_AMQP_URL, default amqp://guest:guest@127.0.0.1:5672/; skipped with
 * {@code --no-amqp}). Prints one line per check; exit 0 if all pass, 1 otherwise.
 *
 * <pre>java -cp out masp.example.SelfTest [--no-amqp]</pre>
 */
public final class SelfTest {

    public static void main(String[] args) {
        check("base64url strict", SelfTest::base64url);
        check("JSON read/write", SelfTest::json);
        check("RFC 8037 A.4 Ed25519 JWS", SelfTest::rfc8037);
        check("RFC 7748 5.2 X25519", SelfTest::rfc7748Functions);
        check("RFC 7748 6.1 X25519 DH", SelfTest::rfc7748Dh);
        check("RFC 7518 C Concat KDF", SelfTest::rfc7518ConcatKdf);
        check("RFC 3394 4.6 AES key wrap", SelfTest::rfc3394);
        check("JWE ECDH-ES+A256KW round trip", SelfTest::jweRoundTrip);
        if (!Arrays.asList(args).contains("--no-amqp")) {
            check("AMQP against RabbitMQ", SelfTest::amqp);
        }
        Checks.exit();
    }


    private static void eq(Object expected, Object actual, String what) {
        boolean same = expected instanceof byte[]
                ? Arrays.equals((byte[]) expected, (byte[]) actual)
                : expected.equals(actual);
        if (!same) {
            throw new AssertionError(what + ": expected " + show(expected) + ", got "
                    + show(actual));
        }
    }

    private static String show(Object o) {
        return o instanceof byte[] ? hex((byte[]) o) : String.valueOf(o);
    }

    private static void refuses(String what, Checks.Check c) {
        try {
            c.run();
        } catch (Exception expected) {
            return;
        }
        throw new AssertionError(what + " was accepted");
    }

    static String hex(byte[] b) {
        StringBuilder s = new StringBuilder();
        for (byte x : b) {
            s.append(String.format("%02x", x));
        }
        return s.toString();
    }

    // ------------------------------------------------------------------ checks

    private static void base64url() {
        eq("AQID", B64.encode(new byte[] {1, 2, 3}), "encode");
        eq("_-8", B64.encode(new byte[] {(byte) 0xff, (byte) 0xef}), "url alphabet");
        eq(hex(new byte[] {(byte) 0xff, (byte) 0xef}), hex(B64.decode("_-8")), "decode");
        refuses("padding", () -> B64.decode("AQ=="));
        refuses("standard alphabet", () -> B64.decode("_+8"));
        refuses("non-canonical trailing bits", () -> B64.decode("AR"));
        refuses("impossible length", () -> B64.decode("AQIDB"));
        refuses("whitespace", () -> B64.decode("AQ ID"));
    }

    private static void json() {
        String text = "{\"a\":[1,-2.5e3,true,null,\"x\\u00e9\\n\"],\"b\":{}}";
        Map<String, Object> m = Json.parseObject(text);
        eq(1L, ((List<?>) m.get("a")).get(0), "integer");
        eq("x\u00e9\n", ((List<?>) m.get("a")).get(4), "escapes");
        eq("{\"a\":[1,-2.5E+3,true,null,\"x\u00e9\\n\"],\"b\":{}}", Json.write(m), "write");
        refuses("duplicate member", () -> Json.parse("{\"a\":1,\"a\":2}"));
        refuses("trailing comma", () -> Json.parse("[1,]"));
        refuses("trailing text", () -> Json.parse("{} x"));
    }

    /** RFC 8037 Appendix A.4: the exact Ed25519 JWS, and its verification (A.5). */
    private static void rfc8037() throws Exception {
        Jwk key = Jwk.fromJson(Json.parseObject("{\"kty\":\"OKP\",\"crv\":\"Ed25519\","
                + "\"d\":\"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A\","
                + "\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}"));
        String jws = Jose.sign(Json.obj("alg", "EdDSA"),
                "Example of Ed25519 signing".getBytes(StandardCharsets.UTF_8), key.privateKey());
        eq("eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-"
                + "09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg", jws, "JWS");
        Jose.verify(jws, key.publicKey(), "EdDSA");
        refuses("another alg", () -> Jose.verify(jws, key.publicKey(), "Ed25519"));
        String tampered = jws.substring(0, jws.length() - 2) + "AA";
        refuses("a changed signature", () -> Jose.verify(tampered, key.publicKey(), "EdDSA"));
    }

    private static java.security.PrivateKey xPriv(String hexD) throws Exception {
        return Jwk.fromJson(Json.obj("kty", "OKP", "crv", "X25519", "x", B64.encode(new byte[32]),
                "d", B64.encode(Jwk.hex(hexD)))).privateKey();
    }

    private static java.security.PublicKey xPub(String hexX) throws Exception {
        return Jwk.publicOf("X25519", Jwk.hex(hexX)).publicKey();
    }

    /** RFC 7748 section 5.2: the X25519 function on two (scalar, u) inputs. */
    private static void rfc7748Functions() throws Exception {
        eq("c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
                hex(Jose.x25519(
                        xPriv("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4"),
                        xPub("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c"))),
                "vector 1");
        eq("95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
                hex(Jose.x25519(
                        xPriv("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d"),
                        xPub("e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493"))),
                "vector 2");
    }

    /** RFC 7748 section 6.1: Alice's and Bob's public keys and their shared secret. */
    private static void rfc7748Dh() throws Exception {
        String a = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
        String aPub = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
        String b = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb";
        String bPub = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f";
        String k = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";
        // Public key = X25519(d, 9): the base point's u-coordinate is 9, little-endian.
        String nine = "0900000000000000000000000000000000000000000000000000000000000000";
        eq(aPub, hex(Jose.x25519(xPriv(a), xPub(nine))), "Alice's public key");
        eq(bPub, hex(Jose.x25519(xPriv(b), xPub(nine))), "Bob's public key");
        eq(k, hex(Jose.x25519(xPriv(a), xPub(bPub))), "K from Alice");
        eq(k, hex(Jose.x25519(xPriv(b), xPub(aPub))), "K from Bob");
    }

    /** RFC 7518 Appendix C: ECDH-ES key agreement, A128GCM, apu "Alice", apv "Bob". */
    private static void rfc7518ConcatKdf() throws Exception {
        int[] zInts = {158, 86, 217, 29, 129, 113, 53, 211, 114, 131, 66, 131, 191, 132, 38, 156,
            251, 49, 110, 163, 218, 128, 106, 72, 246, 218, 167, 121, 140, 254, 144, 196};
        byte[] z = new byte[zInts.length];
        for (int k = 0; k < z.length; k++) {
            z[k] = (byte) zInts[k];
        }
        byte[] key = Jose.concatKdf(z, 128, "A128GCM", B64.decode("QWxpY2U"), B64.decode("Qm9i"));
        eq("VqqN6vgjbSBcIijNcacQGg", B64.encode(key), "derived key");
    }

    /** RFC 3394 section 4.6: 256 bits of key data wrapped with a 256-bit KEK. */
    private static void rfc3394() throws Exception {
        byte[] kek = Jwk.hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
        byte[] data = Jwk.hex("00112233445566778899aabbccddeeff000102030405060708090a0b0c0d0e0f");
        String wrapped = "28c9f404c4b810f4cbccb35cfb87f8263f5786e2d80ed326cbc7f0e71a99f43b"
                + "fb988b9b7a02dd21";
        eq(wrapped, hex(Jose.aesWrap(kek, data)), "wrap");
        eq(hex(data), hex(Jose.aesUnwrap(kek, Jwk.hex(wrapped))), "unwrap");
        byte[] bad = Jwk.hex(wrapped);
        bad[0] ^= 1;
        refuses("a corrupted wrapped key", () -> Jose.aesUnwrap(kek, bad));
    }

    private static void jweRoundTrip() throws Exception {
        java.security.KeyPair kp = java.security.KeyPairGenerator.getInstance("X25519")
                .generateKeyPair();
        byte[] d = Arrays.copyOfRange(kp.getPrivate().getEncoded(),
                kp.getPrivate().getEncoded().length - 32, kp.getPrivate().getEncoded().length);
        Jwk priv = Jwk.fromJson(Json.obj("kty", "OKP", "crv", "X25519", "kid", "test",
                "x", B64.encode(Jwk.rawPublic(kp.getPublic())), "d", B64.encode(d)));
        byte[] msg = "a secret \u00e9".getBytes(StandardCharsets.UTF_8);
        String jwe = Jose.encrypt(msg, Jwk.fromJson(priv.publicJson()),
                Json.obj("kid", "test"));
        Jose.Parsed p = Jose.decrypt(jwe, priv);
        eq(hex(msg), hex(p.payload), "plaintext");
        eq("test", p.header.get("kid"), "kid");
        String[] parts = jwe.split("\\.");
        byte[] ct = B64.decode(parts[3]);
        ct[0] ^= 1;
        String tampered = parts[0] + "." + parts[1] + "." + parts[2] + "." + B64.encode(ct) + "."
                + parts[4];
        refuses("a changed ciphertext", () -> Jose.decrypt(tampered, priv));
    }

    /** Declares a throw-away queue, publishes to it, consumes, nacks, gets it again, acks. */
    private static void amqp() throws Exception {
        String url = System.getenv().getOrDefault("MASP_AMQP_URL",
                "amqp://guest:guest@127.0.0.1:5672/");
        try (Amqp c = Amqp.connect(url)) {
            String q = "masp-java-selftest-" + UUID.randomUUID();
            c.queueDeclare(q, false, false, false, false, Json.obj("x-expires", 60_000));
            try {
                c.qos(10);
                c.confirmSelect();
                Amqp.Properties p = new Amqp.Properties();
                p.contentType = "application/json";
                p.deliveryMode = 2;
                p.correlationId = "corr-1";
                p.replyTo = "nowhere";
                p.userId = userOf(url);
                p.headers = Json.obj("k", "v", "n", 7L);
                byte[] big = new byte[300_000]; // more than one body frame
                Arrays.fill(big, (byte) 'x');
                c.publish("", q, true, p, "hello".getBytes(StandardCharsets.UTF_8));
                c.publish("", q, true, null, big);
                try {
                    c.publish("", q + "-nowhere", true, null, new byte[1]);
                    throw new AssertionError("an unroutable mandatory publish was confirmed");
                } catch (Amqp.AmqpException expected) {
                    eq(312, expected.replyCode, "NO_ROUTE");
                }
                c.consume(q);
                Amqp.Message m1 = c.nextDelivery(5000);
                eq("hello", m1.bodyText(), "first body");
                eq("application/json", m1.properties.contentType, "content type");
                eq(2, m1.properties.deliveryMode, "delivery mode");
                eq("corr-1", m1.properties.correlationId, "correlation id");
                eq("nowhere", m1.properties.replyTo, "reply to");
                eq(userOf(url), m1.properties.userId, "user id");
                eq("v", m1.properties.headers.get("k"), "header");
                Amqp.Message m2 = c.nextDelivery(5000);
                eq(big.length, m2.body.length, "multi-frame body");
                c.ack(m2.deliveryTag);
                c.nack(m1.deliveryTag, true); // requeued: comes back redelivered
                Amqp.Message again = c.nextDelivery(5000);
                eq("hello", again.bodyText(), "redelivered body");
                eq(true, again.redelivered, "redelivered flag");
                c.ack(again.deliveryTag);
                if (c.nextDelivery(300) != null) {
                    throw new AssertionError("a delivery after the queue was drained");
                }
            } finally {
                eq(0L, c.queueDelete(q), "messages left at delete");
            }
        }
    }

    private static String userOf(String url) {
        String info = java.net.URI.create(url).getUserInfo();
        return info == null ? "guest" : info.split(":", 2)[0];
    }
}
