package masp.example;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Map;
import java.util.UUID;

/**
 * One agency's side of the exchange: its keys (as {@code masp init} writes them:
 * {@code <dir>/<agency>/sig.private.jwk} and {@code enc.private.jwk}) and what it signs
 * itself: bearer assertions (authentication.md) and acknowledgements (acknowledgement.md).
 */
public final class Agency {
    public final String id;
    public final Jwk sig; // Ed25519, private
    public final Jwk enc; // X25519, private
    /** The JWS alg name we sign with; the broker accepts "Ed25519" and "EdDSA" alike. */
    public final String alg = "Ed25519";

    public Agency(String id, Path keysDir) throws Exception {
        this(id, Jwk.read(keysDir.resolve(id).resolve("sig.private.jwk")),
                Jwk.read(keysDir.resolve(id).resolve("enc.private.jwk")));
    }

    public Agency(String id, Jwk sig, Jwk enc) {
        this.id = id;
        this.sig = sig;
        this.enc = enc;
        if (!sig.isEd25519() || sig.d == null || !id.equals(Keys.agencyOfKid(sig.kid))) {
            throw new IllegalStateException(id + ": sig.private.jwk is not its private Ed25519 key");
        }
        if (enc.isEd25519() || enc.d == null || !id.equals(Keys.agencyOfKid(enc.kid))) {
            throw new IllegalStateException(id + ": enc.private.jwk is not its private X25519 key");
        }
    }

    static long now() {
        return System.currentTimeMillis() / 1000;
    }

    /** A fresh single-use bearer assertion, 60 s lifetime. */
    public String assertion() throws Exception {
        long now = now();
        Map<String, Object> claims = Json.obj("iss", id, "sub", id, "aud", "broker",
                "jti", UUID.randomUUID().toString(), "iat", now, "exp", now + 60);
        return Jose.sign(Json.obj("alg", alg, "kid", sig.kid, "typ", "JWT"),
                Json.write(claims).getBytes(StandardCharsets.UTF_8), sig.privateKey());
    }

    /**
     * A signed acknowledgement of a delivery, with the longest lifetime allowed (24 h): an
     * ack published to masp.acks may wait there while the broker is down.
     */
    public String ack(String deliveryId, String messageId, String status, String reason)
            throws Exception {
        long now = now();
        Map<String, Object> claims = Json.obj("iss", id, "aud", "broker",
                "delivery_id", deliveryId, "message_id", messageId, "status", status,
                "iat", now, "exp", now + 86_400, "jti", UUID.randomUUID().toString());
        if (reason != null) {
            claims.put("reason", reason);
        }
        return Jose.sign(Json.obj("alg", alg, "kid", sig.kid, "typ", "masp-ack+jwt"),
                Json.write(claims).getBytes(StandardCharsets.UTF_8), sig.privateKey());
    }
}
