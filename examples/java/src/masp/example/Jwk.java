package masp.example;

import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyFactory;
import java.security.PrivateKey;
import java.security.PublicKey;
import java.security.spec.PKCS8EncodedKeySpec;
import java.security.spec.X509EncodedKeySpec;
import java.util.Arrays;
import java.util.Map;

/**
 * An OKP JSON Web Key (RFC 8037): {@code {"kty":"OKP","crv":"Ed25519"|"X25519","x":...,"d":...,"kid":...}}.
 *
 * <p>The JDK takes raw 32-byte Ed25519/X25519 keys most simply through their DER encodings,
 * which for these curves are a fixed prefix followed by the raw key (RFC 8410):
 * PKCS#8 {@code 302e020100300506032b65XX04220420 || d} and X.509
 * {@code 302a300506032b65XX032100 || x}, with XX = 70 for Ed25519 and 6e for X25519.
 */
public final class Jwk {
    public final String crv;
    public final String kid;
    public final byte[] x;
    public final byte[] d; // null for a public key
    public final Map<String, Object> json;

    private static final byte[] PKCS8_PREFIX = hex("302e020100300506032b65000422" + "0420");
    private static final byte[] X509_PREFIX = hex("302a300506032b6500032100");

    private Jwk(String crv, String kid, byte[] x, byte[] d, Map<String, Object> json) {
        this.crv = crv;
        this.kid = kid;
        this.x = x;
        this.d = d;
        this.json = json;
    }

    public static Jwk fromJson(Map<String, Object> j) {
        if (!"OKP".equals(j.get("kty"))) {
            throw new IllegalArgumentException("JWK: kty must be OKP");
        }
        String crv = Json.asString(j.get("crv"), "JWK crv");
        if (!crv.equals("Ed25519") && !crv.equals("X25519")) {
            throw new IllegalArgumentException("JWK: unsupported crv " + crv);
        }
        byte[] x = B64.decode(Json.asString(j.get("x"), "JWK x"));
        if (x.length != 32) {
            throw new IllegalArgumentException("JWK: x must be 32 bytes");
        }
        byte[] d = null;
        if (j.containsKey("d")) {
            d = B64.decode(Json.asString(j.get("d"), "JWK d"));
            if (d.length != 32) {
                throw new IllegalArgumentException("JWK: d must be 32 bytes");
            }
        }
        String kid = j.get("kid") instanceof String ? (String) j.get("kid") : null;
        return new Jwk(crv, kid, x, d, j);
    }

    public static Jwk read(Path file) throws Exception {
        return fromJson(Json.parseObject(Files.readString(file)));
    }

    /** A public JWK built from raw bytes (e.g. an ephemeral key). */
    public static Jwk publicOf(String crv, byte[] x) {
        return new Jwk(crv, null, x.clone(), null,
                Json.obj("kty", "OKP", "crv", crv, "x", B64.encode(x)));
    }

    public boolean isEd25519() {
        return crv.equals("Ed25519");
    }

    private byte oid() {
        return (byte) (isEd25519() ? 0x70 : 0x6e);
    }

    private String jdkAlg() {
        return isEd25519() ? "Ed25519" : "X25519";
    }

    public PublicKey publicKey() throws Exception {
        byte[] der = concat(X509_PREFIX, x);
        der[8] = oid();
        return KeyFactory.getInstance(jdkAlg()).generatePublic(new X509EncodedKeySpec(der));
    }

    public PrivateKey privateKey() throws Exception {
        if (d == null) {
            throw new IllegalStateException("JWK " + kid + " has no private part");
        }
        byte[] der = concat(PKCS8_PREFIX, d);
        der[11] = oid();
        return KeyFactory.getInstance(jdkAlg()).generatePrivate(new PKCS8EncodedKeySpec(der));
    }

    /** The raw 32 bytes of a JDK Ed25519/X25519 public key (the tail of its X.509 encoding). */
    public static byte[] rawPublic(PublicKey k) {
        byte[] der = k.getEncoded();
        return Arrays.copyOfRange(der, der.length - 32, der.length);
    }

    /** The public members only, as published in a JWKS. */
    public Map<String, Object> publicJson() {
        Map<String, Object> m = Json.obj("kty", "OKP", "crv", crv, "x", B64.encode(x));
        if (kid != null) {
            m.put("kid", kid);
        }
        return m;
    }

    static byte[] concat(byte[]... parts) {
        int n = 0;
        for (byte[] p : parts) {
            n += p.length;
        }
        byte[] out = new byte[n];
        int o = 0;
        for (byte[] p : parts) {
            System.arraycopy(p, 0, out, o, p.length);
            o += p.length;
        }
        return out;
    }

    static byte[] hex(String h) {
        byte[] b = new byte[h.length() / 2];
        for (int k = 0; k < b.length; k++) {
            b[k] = (byte) Integer.parseInt(h.substring(2 * k, 2 * k + 2), 16);
        }
        return b;
    }
}
