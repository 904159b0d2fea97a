package masp.example;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.MessageDigest;
import java.security.PrivateKey;
import java.security.PublicKey;
import java.security.SecureRandom;
import java.security.Signature;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import javax.crypto.Cipher;
import javax.crypto.KeyAgreement;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.SecretKeySpec;

/**
 * The JOSE pieces the exchange uses, on the JDK alone.
 *
 * <ul>
 *   <li>JWS compact serialisation (RFC 7515) with Ed25519 (alg {@code EdDSA}, RFC 8037, or the
 *       fully-specified {@code Ed25519}, RFC 9864: the same signature either way);</li>
 *   <li>JWE compact serialisation (RFC 7516) with {@code ECDH-ES+A256KW} over X25519 and
 *       {@code A256GCM} content encryption (RFC 7518 sections 4.6, 4.4 and 5.3; RFC 8037);</li>
 *   <li>the Concat KDF of NIST SP 800-56A as RFC 7518 section 4.6.2 profiles it.</li>
 * </ul>
 */
public final class Jose {
    private static final SecureRandom RNG = new SecureRandom();

    private Jose() {
    }

    /** A decoded JWS or JWE: its protected header, and the payload or plaintext. */
    public static final class Parsed {
        public final Map<String, Object> header;
        public final byte[] payload;

        Parsed(Map<String, Object> header, byte[] payload) {
            this.header = header;
            this.payload = payload;
        }

        public String payloadText() {
            return B64.utf8(payload);
        }

        public Map<String, Object> payloadJson() {
            return Json.parseObject(payloadText());
        }
    }

    // ------------------------------------------------------------------ JWS

    /** Signs {@code payload} under the given protected header (which must carry {@code alg}). */
    public static String sign(Map<String, Object> header, byte[] payload, PrivateKey key)
            throws Exception {
        String signingInput = B64.encode(Json.write(header)) + "." + B64.encode(payload);
        Signature s = Signature.getInstance("Ed25519");
        s.initSign(key);
        s.update(signingInput.getBytes(StandardCharsets.US_ASCII));
        return signingInput + "." + B64.encode(s.sign());
    }

    /** Splits a compact JWS and decodes its header, without checking anything. */
    public static Parsed peekJws(String compact) {
        String[] p = split(compact, 3, "JWS");
        return new Parsed(Json.parseObject(B64.decodeUtf8(p[0])), B64.decode(p[1]));
    }

    /**
     * Verifies a compact JWS with an Ed25519 public key. {@code acceptedAlgs} lists the alg
     * values this caller accepts (e.g. {@code "EdDSA", "Ed25519"}); anything else, an unknown
     * {@code crit}, or a bad signature throws.
     */
    public static Parsed verify(String compact, PublicKey key, String... acceptedAlgs)
            throws Exception {
        String[] p = split(compact, 3, "JWS");
        Map<String, Object> header = Json.parseObject(B64.decodeUtf8(p[0]));
        Object alg = header.get("alg");
        if (!Arrays.asList(acceptedAlgs).contains(alg)) {
            throw new SecurityException("JWS alg " + alg + " not accepted");
        }
        if (header.containsKey("crit")) {
            throw new SecurityException("JWS crit header not understood");
        }
        byte[] sig = B64.decode(p[2]);
        if (sig.length != 64) {
            throw new SecurityException("JWS signature is not 64 bytes");
        }
        Signature s = Signature.getInstance("Ed25519");
        s.initVerify(key);
        s.update((p[0] + "." + p[1]).getBytes(StandardCharsets.US_ASCII));
        if (!s.verify(sig)) {
            throw new SecurityException("JWS signature does not verify");
        }
        return new Parsed(header, B64.decode(p[1]));
    }

    // ------------------------------------------------------------------ JWE

    /**
     * Encrypts to an X25519 public key with ECDH-ES+A256KW / A256GCM. {@code extraHeader}
     * (e.g. {@code kid}, {@code typ}, {@code cty}) goes into the protected header after
     * {@code alg}, {@code enc} and {@code epk}.
     */
    public static String encrypt(byte[] plaintext, Jwk recipient, Map<String, Object> extraHeader)
            throws Exception {
        // 1. An ephemeral X25519 key pair, and the shared secret Z with the recipient's key.
        KeyPairGenerator g = KeyPairGenerator.getInstance("X25519");
        KeyPair eph = g.generateKeyPair();
        byte[] z = x25519(eph.getPrivate(), recipient.publicKey());

        Map<String, Object> header = new LinkedHashMap<>();
        header.put("alg", "ECDH-ES+A256KW");
        header.put("enc", "A256GCM");
        header.put("epk", Jwk.publicOf("X25519", Jwk.rawPublic(eph.getPublic())).json);
        if (extraHeader != null) {
            header.putAll(extraHeader);
        }

        // 2. The key-encryption key from Z (no apu/apv), then a fresh content key wrapped in it.
        byte[] kek = concatKdf(z, 256, "ECDH-ES+A256KW", new byte[0], new byte[0]);
        byte[] cek = new byte[32];
        RNG.nextBytes(cek);
        byte[] encryptedKey = aesWrap(kek, cek);

        // 3. A256GCM over the plaintext, the protected header's base64url text as the AAD.
        String protectedB64 = B64.encode(Json.write(header));
        byte[] iv = new byte[12];
        RNG.nextBytes(iv);
        Cipher c = Cipher.getInstance("AES/GCM/NoPadding");
        c.init(Cipher.ENCRYPT_MODE, new SecretKeySpec(cek, "AES"), new GCMParameterSpec(128, iv));
        c.updateAAD(protectedB64.getBytes(StandardCharsets.US_ASCII));
        byte[] out = c.doFinal(plaintext);
        byte[] ct = Arrays.copyOfRange(out, 0, out.length - 16);
        byte[] tag = Arrays.copyOfRange(out, out.length - 16, out.length);
        return protectedB64 + "." + B64.encode(encryptedKey) + "." + B64.encode(iv) + "."
                + B64.encode(ct) + "." + B64.encode(tag);
    }

    /** Decodes a compact JWE's protected header, without decrypting anything. */
    public static Map<String, Object> peekJweHeader(String compact) {
        return Json.parseObject(B64.decodeUtf8(split(compact, 5, "JWE")[0]));
    }

    private static final java.util.List<String> KEY_LOCATING =
            java.util.List.of("jku", "jwk", "x5u", "x5c", "x5t", "x5t#S256");

    /** Decrypts a compact JWE made with ECDH-ES+A256KW / A256GCM to our X25519 key. */
    public static Parsed decrypt(String compact, Jwk recipientPrivate) throws Exception {
        String[] p = split(compact, 5, "JWE");
        Map<String, Object> header = Json.parseObject(B64.decodeUtf8(p[0]));
        if (!"ECDH-ES+A256KW".equals(header.get("alg"))) {
            throw new SecurityException("JWE alg " + header.get("alg") + " not accepted");
        }
        if (!"A256GCM".equals(header.get("enc"))) {
            throw new SecurityException("JWE enc " + header.get("enc") + " not accepted");
        }
        if (header.containsKey("crit") || header.containsKey("zip")) {
            throw new SecurityException("JWE crit/zip not supported");
        }
        for (String k : KEY_LOCATING) {
            if (header.containsKey(k)) {
                throw new SecurityException("JWE header carries " + k);
            }
        }
        Jwk epk = Jwk.fromJson(Json.asObject(header.get("epk"), "JWE epk"));
        if (!epk.crv.equals("X25519") || epk.d != null) {
            throw new SecurityException("JWE epk must be a public X25519 key");
        }
        byte[] apu = header.containsKey("apu")
                ? B64.decode(Json.asString(header.get("apu"), "apu")) : new byte[0];
        byte[] apv = header.containsKey("apv")
                ? B64.decode(Json.asString(header.get("apv"), "apv")) : new byte[0];

        byte[] z = x25519(recipientPrivate.privateKey(), epk.publicKey());
        byte[] kek = concatKdf(z, 256, "ECDH-ES+A256KW", apu, apv);
        byte[] cek;
        try {
            cek = aesUnwrap(kek, B64.decode(p[1]));
        } catch (java.security.GeneralSecurityException e) {
            throw new SecurityException("JWE key unwrap failed: not sealed to this key, or altered");
        }
        byte[] iv = B64.decode(p[2]);
        byte[] ct = B64.decode(p[3]);
        byte[] tag = B64.decode(p[4]);
        if (iv.length != 12 || tag.length != 16 || cek.length != 32) {
            throw new SecurityException("JWE: bad IV, tag or key length");
        }
        Cipher c = Cipher.getInstance("AES/GCM/NoPadding");
        c.init(Cipher.DECRYPT_MODE, new SecretKeySpec(cek, "AES"), new GCMParameterSpec(128, iv));
        c.updateAAD(p[0].getBytes(StandardCharsets.US_ASCII));
        try {
            return new Parsed(header, c.doFinal(Jwk.concat(ct, tag)));
        } catch (javax.crypto.AEADBadTagException e) {
            throw new SecurityException("JWE ciphertext or header was altered (GCM tag)");
        }
    }

    // ------------------------------------------------------------ primitives

    /** X25519 (RFC 7748): the JDK refuses an all-zero result itself. */
    public static byte[] x25519(PrivateKey priv, PublicKey pub) throws Exception {
        KeyAgreement ka = KeyAgreement.getInstance("X25519");
        ka.init(priv);
        ka.doPhase(pub, true);
        return ka.generateSecret();
    }

    /**
     * Concat KDF (NIST SP 800-56A section 5.8.1, RFC 7518 section 4.6.2) with SHA-256:
     * {@code K(i) = SHA-256(be32(i) || Z || OtherInfo)} for i = 1, 2, ..., where OtherInfo =
     * AlgorithmID || PartyUInfo || PartyVInfo || SuppPubInfo, the first three each a 32-bit
     * big-endian length and the bytes, SuppPubInfo the key length in bits as a 32-bit integer.
     * For ECDH-ES+A256KW the AlgorithmID is the {@code alg} value; for direct ECDH-ES it is the
     * {@code enc} value.
     */
    public static byte[] concatKdf(byte[] z, int keyBits, String algorithmId, byte[] apu,
            byte[] apv) throws Exception {
        byte[] alg = algorithmId.getBytes(StandardCharsets.US_ASCII);
        ByteBuffer other = ByteBuffer.allocate(4 + alg.length + 4 + apu.length + 4 + apv.length + 4);
        other.putInt(alg.length).put(alg);
        other.putInt(apu.length).put(apu);
        other.putInt(apv.length).put(apv);
        other.putInt(keyBits);
        int keyBytes = keyBits / 8;
        byte[] out = new byte[keyBytes];
        MessageDigest sha = MessageDigest.getInstance("SHA-256");
        for (int i = 1, done = 0; done < keyBytes; i++) {
            sha.update(ByteBuffer.allocate(4).putInt(i).array());
            sha.update(z);
            sha.update(other.array());
            byte[] h = sha.digest();
            int n = Math.min(h.length, keyBytes - done);
            System.arraycopy(h, 0, out, done, n);
            done += n;
        }
        return out;
    }

    /** AES key wrap (RFC 3394) with the default IV A6A6A6A6A6A6A6A6. */
    public static byte[] aesWrap(byte[] kek, byte[] keyData) throws Exception {
        Cipher c = Cipher.getInstance("AESWrap");
        c.init(Cipher.WRAP_MODE, new SecretKeySpec(kek, "AES"));
        return c.wrap(new SecretKeySpec(keyData, "AES"));
    }

    /** AES key unwrap (RFC 3394); an integrity failure throws. */
    public static byte[] aesUnwrap(byte[] kek, byte[] wrapped) throws Exception {
        Cipher c = Cipher.getInstance("AESWrap");
        c.init(Cipher.UNWRAP_MODE, new SecretKeySpec(kek, "AES"));
        return c.unwrap(wrapped, "AES", Cipher.SECRET_KEY).getEncoded();
    }

    public static byte[] sha256(byte[] b) throws Exception {
        return MessageDigest.getInstance("SHA-256").digest(b);
    }

    public static byte[] sha256(String ascii) throws Exception {
        return sha256(ascii.getBytes(StandardCharsets.UTF_8));
    }

    /** Lower-case hex, as in payload_digest. */
    public static String hex(byte[] b) {
        StringBuilder s = new StringBuilder(b.length * 2);
        for (byte x : b) {
            s.append(Character.forDigit((x >> 4) & 0xf, 16)).append(Character.forDigit(x & 0xf, 16));
        }
        return s.toString();
    }

    private static String[] split(String compact, int parts, String what) {
        String[] p = compact.split("\\.", -1);
        if (p.length != parts) {
            throw new IllegalArgumentException(what + ": expected " + parts + " parts, got "
                    + p.length);
        }
        return p;
    }
}
