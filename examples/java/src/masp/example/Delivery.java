package masp.example;

import java.security.PublicKey;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.Function;

/**
 * Opening a delivery and making every check docs/spec/delivery.md ("What a recipient MUST
 * check") lists, in its order. Any failure throws: the recipient refuses the whole delivery.
 */
public final class Delivery {
    /** A delivery JWE larger than this is not opened (limits.md). */
    static final int MAX_JWE_BYTES = 524_288;

    private Delivery() {
    }

    /** A verified delivery: the broker's token and the sender's verified presentation. */
    public static final class Opened {
        public final Map<String, Object> token; // the delivery token's claims
        public final String tokenAlg; // the alg name the broker signed the token with
        public final SdJwt.Verified message;

        Opened(Map<String, Object> token, String tokenAlg, SdJwt.Verified message) {
            this.token = token;
            this.tokenAlg = tokenAlg;
            this.message = message;
        }

        public String deliveryId() {
            return (String) token.get("jti");
        }

        public String messageId() {
            return (String) token.get("message_id");
        }
    }

    /**
     * Opens and verifies one delivery addressed to {@code me}.
     *
     * @param agencyKeys the sender's signing key by kid (from /v1/agency-keys), null if unknown
     * @param receivedSchema the received-variant body schema for a masp_type
     */
    public static Opened open(String jwe, Agency me, Keys.BrokerKeys broker,
            Function<String, PublicKey> agencyKeys, Function<String, JsonSchema> receivedSchema)
            throws Exception {
        if (jwe.length() > MAX_JWE_BYTES) {
            throw new SecurityException("delivery larger than " + MAX_JWE_BYTES + " bytes");
        }
        // 1. Decrypt under the JOSE profile: cty, our own enc key by kid, no key-locating headers.
        Map<String, Object> h = Jose.peekJweHeader(jwe);
        if (!"masp-delivery+json".equals(h.get("cty"))) {
            throw new SecurityException("JWE cty is " + h.get("cty"));
        }
        if (!me.enc.kid.equals(h.get("kid"))) {
            // A client that rotated keeps its old private enc keys and picks by kid here.
            throw new SecurityException("JWE kid " + h.get("kid") + " is not our encryption key");
        }
        Jose.Parsed plain = Jose.decrypt(jwe, me.enc);

        // 2. The plaintext: a JSON object with exactly the string members sd_jwt and delivery.
        Map<String, Object> body = plain.payloadJson();
        if (!body.keySet().equals(Set.of("sd_jwt", "delivery"))) {
            throw new SecurityException("delivery body members are " + body.keySet());
        }
        String sdJwt = Json.asString(body.get("sd_jwt"), "sd_jwt");
        String tokenJws = Json.asString(body.get("delivery"), "delivery");

        // 3. The delivery token, with a pinned broker signing key only.
        Jose.Parsed t = broker.verify(tokenJws, "masp-delivery+jwt", "Ed25519", "EdDSA");
        Map<String, Object> token = t.payloadJson();
        String tokenAlg = (String) t.header.get("alg");

        // 4. Addressed to us, by the broker.
        if (!me.id.equals(token.get("aud"))) {
            throw new SecurityException("delivery token aud is " + token.get("aud"));
        }
        if (!"broker".equals(token.get("iss"))) {
            throw new SecurityException("delivery token iss is " + token.get("iss"));
        }
        String deliveryId = Json.asString(token.get("jti"), "token jti");
        String messageId = Json.asString(token.get("message_id"), "token message_id");
        String sender = Json.asString(token.get("sender"), "token sender");
        String maspType = Json.asString(token.get("masp_type"), "token masp_type");
        Json.asString(token.get("purpose"), "token purpose");
        Json.asLong(token.get("iat"), "token iat");
        Json.asLong(token.get("withheld"), "token withheld");
        Json.asLong(token.get("audit_seq"), "token audit_seq");
        Json.asObject(token.get("dsa"), "token dsa");
        if (deliveryId.isEmpty() || messageId.isEmpty()) {
            throw new SecurityException("empty delivery or message id");
        }
        List<String> disclosed = new ArrayList<>();
        for (Object o : Json.asArray(token.get("disclosed"), "token disclosed")) {
            disclosed.add(Json.asString(o, "disclosed entry"));
        }

        // 5. The sender's SD-JWT, with the sender's key from the agency set (kid names sender).
        SdJwt.Verified m = SdJwt.verify(sdJwt, sender, agencyKeys);

        // 6. The JWT and the token describe the same message (iss, jti, masp_type, purpose).
        Map<String, Object> c = m.claims;
        if (!sender.equals(c.get("iss")) || !messageId.equals(c.get("jti"))
                || !maspType.equals(c.get("masp_type"))) {
            throw new SecurityException("the token does not describe this SD-JWT");
        }
        if (!c.get("purpose").equals(token.get("purpose"))) {
            throw new SecurityException("the token's purpose is not the message's");
        }

        // 7. Exactly the disclosures the token lists, order aside.
        if (!SdJwt.sameMultiset(m.digests, disclosed)) {
            throw new SecurityException("disclosures differ from the token's disclosed list");
        }

        // 8. Each subject whose reference we may know points at an element disclosure we have.
        Set<String> seenRefs = new HashSet<>();
        for (Object o : Json.asArray(token.get("subjects"), "token subjects")) {
            Map<String, Object> s = Json.asObject(o, "token subject");
            Json.asString(s.get("category"), "subject category");
            String ref = Json.asString(s.get("ref"), "subject ref");
            if (!ref.matches("^[0-9a-f]{64}$") || !seenRefs.add(ref + "/" + s.get("category"))) {
                throw new SecurityException("a subject pseudonym is not 64 lower-case hex");
            }
            if (s.containsKey("disclosure")) {
                String d = Json.asString(s.get("disclosure"), "subject disclosure");
                if (!m.subjectsByDigest.containsKey(d)) {
                    throw new SecurityException("a subject's disclosure is not in the SD-JWT");
                }
            }
        }

        // 9. The disclosed body against the schema of what we may receive.
        JsonSchema schema = receivedSchema.apply(maspType);
        List<String> errors = schema.validate(m.body);
        if (!errors.isEmpty()) {
            throw new SecurityException("body does not match the received schema: " + errors);
        }
        // 10. De-duplication by delivery id is the caller's (it knows what it handed over).
        return new Opened(token, tokenAlg, m);
    }
}
