package masp.example;

import java.security.PublicKey;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.Function;

/**
 * The agency message: an SD-JWT (RFC 9901) without key binding, as docs/spec/message.md
 * profiles it. {@link #issue} builds one for sending; {@link #verify} checks one received
 * (the sender's issuer-signed JWT with the disclosures this recipient may see).
 */
public final class SdJwt {
    private static final SecureRandom RNG = new SecureRandom();

    /** The claims that travel in clear, in the order we write them. Exactly these. */
    static final List<String> CLEAR_CLAIMS = List.of("iss", "jti", "iat", "exp", "masp_type",
            "masp_schema", "case_id", "purpose", "subjects", "_sd", "_sd_alg");

    /** Names a disclosure may never have (message.md, "What the broker refuses"). */
    static final Set<String> RESERVED_NAMES = Set.of("iss", "jti", "iat", "exp", "nbf",
            "masp_type", "masp_schema", "case_id", "purpose", "subjects", "_sd", "_sd_alg",
            "cnf", "...");

    /** Envelope disclosures that are not body fields. */
    static final Set<String> ENVELOPE_DISCLOSURES = Set.of("consent_ref", "override");

    private SdJwt() {
    }

    /** A disclosure as sent: its encoded form and its digest. */
    public static final class Disclosure {
        public final String encoded;
        public final String digest;
        public final String name; // null for an array element (a subject)
        public final Object value;

        Disclosure(String encoded, String name, Object value) throws Exception {
            this.encoded = encoded;
            this.digest = digest(encoded);
            this.name = name;
            this.value = value;
        }
    }

    /** The digest of a disclosure: base64url(SHA-256(ASCII of the encoded disclosure)). */
    public static String digest(String encodedDisclosure) throws Exception {
        return B64.encode(Jose.sha256(encodedDisclosure));
    }

    private static String salt() {
        byte[] b = new byte[16]; // 128 bits from a CSPRNG, 22 characters
        RNG.nextBytes(b);
        return B64.encode(b);
    }

    // ---------------------------------------------------------------- issuing

    /** What {@link #issue} produced. */
    public static final class Issued {
        public final String serialized; // jwt~d1~...~dn~
        public final String jwt;
        public final List<Disclosure> disclosures;

        Issued(String serialized, String jwt, List<Disclosure> disclosures) {
            this.serialized = serialized;
            this.jwt = jwt;
            this.disclosures = disclosures;
        }
    }

    /**
     * Issues an agency message.
     *
     * @param envelope the clear claims iss, jti, iat, exp, masp_type, masp_schema, case_id,
     *     purpose (subjects, _sd and _sd_alg are built here)
     * @param body every body field to send, each becomes an object-property disclosure
     * @param subjects each {@code {"ref", "category"}} becomes an array-element disclosure
     * @param consentRef OPTIONAL consent reference (null for none)
     * @param alg "Ed25519" or "EdDSA"
     */
    public static Issued issue(Map<String, Object> envelope, Map<String, Object> body,
            List<Map<String, Object>> subjects, String consentRef, Jwk signingKey, String alg)
            throws Exception {
        List<Disclosure> disclosures = new ArrayList<>();
        List<String> sd = new ArrayList<>();
        for (Map.Entry<String, Object> f : body.entrySet()) {
            if (RESERVED_NAMES.contains(f.getKey()) || ENVELOPE_DISCLOSURES.contains(f.getKey())) {
                throw new IllegalArgumentException("body field named like a claim: " + f.getKey());
            }
            if (f.getValue() == null) {
                continue; // optional fields are present with a value or absent
            }
            Disclosure d = property(f.getKey(), f.getValue());
            disclosures.add(d);
            sd.add(d.digest);
        }
        if (consentRef != null) {
            Disclosure d = property("consent_ref", consentRef);
            disclosures.add(d);
            sd.add(d.digest);
        }
        List<Object> subjectSlots = new ArrayList<>();
        for (Map<String, Object> s : subjects) {
            String encoded = B64.encode(Json.write(List.of(salt(), s)));
            Disclosure d = new Disclosure(encoded, null, s);
            disclosures.add(d);
            subjectSlots.add(Json.obj("...", d.digest));
        }
        // Two decoys (digests of random bytes), then sort so the order says nothing.
        for (int k = 0; k < 2; k++) {
            byte[] r = new byte[32];
            RNG.nextBytes(r);
            sd.add(digest(B64.encode(r)));
        }
        Collections.sort(sd);

        Map<String, Object> payload = new LinkedHashMap<>();
        for (String c : List.of("iss", "jti", "iat", "exp", "masp_type", "masp_schema", "case_id",
                "purpose")) {
            if (!envelope.containsKey(c)) {
                throw new IllegalArgumentException("envelope claim missing: " + c);
            }
            payload.put(c, envelope.get(c));
        }
        payload.put("subjects", subjectSlots);
        payload.put("_sd", sd);
        payload.put("_sd_alg", "sha-256");

        String iss = (String) envelope.get("iss");
        if (signingKey.kid == null || !iss.equals(Keys.agencyOfKid(signingKey.kid))) {
            throw new IllegalArgumentException("the signing key's kid must name " + iss);
        }
        Map<String, Object> header = Json.obj("alg", alg, "kid", signingKey.kid,
                "typ", "masp+sd-jwt");
        String jwt = Jose.sign(header, Json.write(payload).getBytes("UTF-8"),
                signingKey.privateKey());
        StringBuilder out = new StringBuilder(jwt).append('~');
        for (Disclosure d : disclosures) {
            out.append(d.encoded).append('~');
        }
        return new Issued(out.toString(), jwt, disclosures);
    }

    private static Disclosure property(String name, Object value) throws Exception {
        return new Disclosure(B64.encode(Json.write(List.of(salt(), name, value))), name, value);
    }

    // ---------------------------------------------------------------- verifying

    /** A verified presentation: clear claims, disclosed values, and every disclosure's digest. */
    public static final class Verified {
        public final Map<String, Object> header;
        public final Map<String, Object> claims; // the issuer-signed payload as received
        public final Map<String, Object> body = new LinkedHashMap<>(); // disclosed body fields
        public final Map<String, Object> envelopeDisclosures = new LinkedHashMap<>();
        public final Map<String, Map<String, Object>> subjectsByDigest = new LinkedHashMap<>();
        public final List<String> digests = new ArrayList<>(); // in presentation order

        Verified(Map<String, Object> header, Map<String, Object> claims) {
            this.header = header;
            this.claims = claims;
        }
    }

    /**
     * Verifies an SD-JWT presentation: structure, the issuer's signature (key found by
     * {@code kid} through {@code agencyKeys}, which must name {@code expectedIssuer}), the
     * payload's claims, and that every disclosure's digest is where it belongs.
     */
    public static Verified verify(String sdJwt, String expectedIssuer,
            Function<String, PublicKey> agencyKeys) throws Exception {
        if (!sdJwt.endsWith("~")) {
            throw new SecurityException("SD-JWT does not end in '~' (or carries a key binding)");
        }
        String[] parts = sdJwt.split("~", -1); // jwt, d1, ..., dn, ""
        for (int k = 0; k < parts.length - 1; k++) {
            if (parts[k].isEmpty()) {
                throw new SecurityException("SD-JWT has an empty component");
            }
        }
        String jwt = parts[0];

        // The issuer-signed JWT: header first, then the key named by kid, then the signature.
        Jose.Parsed peek = Jose.peekJws(jwt);
        Map<String, Object> h = peek.header;
        for (String refused : List.of("crit", "jku", "jwk", "x5u", "x5c", "x5t", "x5t#S256")) {
            if (h.containsKey(refused)) {
                throw new SecurityException("SD-JWT header carries " + refused);
            }
        }
        if (!"masp+sd-jwt".equals(h.get("typ"))) {
            throw new SecurityException("SD-JWT typ is " + h.get("typ"));
        }
        String kid = Json.asString(h.get("kid"), "kid");
        if (!expectedIssuer.equals(Keys.agencyOfKid(kid))) {
            throw new SecurityException("SD-JWT kid " + kid + " does not name " + expectedIssuer);
        }
        PublicKey key = agencyKeys.apply(kid);
        if (key == null) {
            throw new SecurityException("unknown signing key " + kid);
        }
        Jose.Parsed p = Jose.verify(jwt, key, "Ed25519", "EdDSA");
        Map<String, Object> c = p.payloadJson();
        Verified v = new Verified(h, c);

        // The payload: exactly the clear claims, with their types.
        if (!c.keySet().equals(new HashSet<>(CLEAR_CLAIMS))) {
            throw new SecurityException("SD-JWT claims are not exactly the envelope: " + c.keySet());
        }
        if (!expectedIssuer.equals(c.get("iss"))) {
            throw new SecurityException("SD-JWT iss is " + c.get("iss"));
        }
        for (String s : List.of("jti", "masp_type", "case_id", "purpose")) {
            Json.asString(c.get(s), s);
        }
        Json.asLong(c.get("iat"), "iat");
        Json.asLong(c.get("exp"), "exp");
        if (!"1".equals(c.get("masp_schema"))) {
            throw new SecurityException("masp_schema is not \"1\"");
        }
        if (!"sha-256".equals(c.get("_sd_alg"))) {
            throw new SecurityException("_sd_alg is not sha-256");
        }
        Set<String> sd = new HashSet<>();
        Set<String> allDigests = new HashSet<>();
        for (Object o : Json.asArray(c.get("_sd"), "_sd")) {
            String d = Json.asString(o, "_sd entry");
            sd.add(d);
            if (!allDigests.add(d)) {
                throw new SecurityException("a digest appears twice in the payload");
            }
        }
        Set<String> slots = new HashSet<>();
        List<Object> subjectSlots = Json.asArray(c.get("subjects"), "subjects");
        if (subjectSlots.isEmpty() || subjectSlots.size() > 16) {
            throw new SecurityException("subjects must have 1 to 16 entries");
        }
        for (Object o : subjectSlots) {
            Map<String, Object> slot = Json.asObject(o, "subjects entry");
            if (!slot.keySet().equals(Set.of("..."))) {
                throw new SecurityException("a subjects entry is not exactly {\"...\": digest}");
            }
            String d = Json.asString(slot.get("..."), "subjects digest");
            slots.add(d);
            if (!allDigests.add(d)) {
                throw new SecurityException("a digest appears twice in the payload");
            }
        }

        // The disclosures: each well-formed, each digest where it belongs, none twice.
        Set<String> seenDigests = new HashSet<>();
        Set<String> seenNames = new HashSet<>();
        for (int k = 1; k < parts.length - 1; k++) {
            String enc = parts[k];
            List<Object> arr = Json.asArray(Json.parse(B64.decodeUtf8(enc)), "disclosure");
            if (arr.size() != 2 && arr.size() != 3) {
                throw new SecurityException("a disclosure is not an array of 2 or 3 elements");
            }
            Json.asString(arr.get(0), "disclosure salt");
            noNestedSd(arr.get(arr.size() - 1));
            String d = digest(enc);
            if (!seenDigests.add(d)) {
                throw new SecurityException("the same disclosure twice");
            }
            v.digests.add(d);
            if (arr.size() == 3) {
                String name = Json.asString(arr.get(1), "disclosure name");
                if (RESERVED_NAMES.contains(name) || c.containsKey(name)) {
                    throw new SecurityException("a disclosure named like a clear claim: " + name);
                }
                if (!sd.contains(d)) {
                    throw new SecurityException("a property disclosure whose digest is not in _sd");
                }
                if (!seenNames.add(name)) {
                    throw new SecurityException("two disclosures of one name: " + name);
                }
                if (ENVELOPE_DISCLOSURES.contains(name)) {
                    v.envelopeDisclosures.put(name, arr.get(2));
                } else {
                    v.body.put(name, arr.get(2));
                }
            } else {
                if (!slots.contains(d)) {
                    throw new SecurityException("an element disclosure whose digest is not in subjects");
                }
                Map<String, Object> subject = Json.asObject(arr.get(1), "subject");
                if (!subject.keySet().equals(Set.of("ref", "category"))) {
                    throw new SecurityException("a subject is not exactly {ref, category}");
                }
                v.subjectsByDigest.put(d, subject);
            }
        }
        return v;
    }

    /** {@code _sd} below the top level, or {@code ...} outside a subjects slot, is refused. */
    private static void noNestedSd(Object v) {
        if (v instanceof Map) {
            for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) {
                if ("_sd".equals(e.getKey()) || "...".equals(e.getKey())) {
                    throw new SecurityException("a disclosed value carries " + e.getKey());
                }
                noNestedSd(e.getValue());
            }
        } else if (v instanceof List) {
            for (Object o : (List<?>) v) {
                noNestedSd(o);
            }
        }
    }

    /** Multiset equality of two digest lists, order aside. */
    static boolean sameMultiset(List<String> a, List<String> b) {
        String[] x = a.toArray(new String[0]);
        String[] y = b.toArray(new String[0]);
        Arrays.sort(x);
        Arrays.sort(y);
        return Arrays.equals(x, y);
    }
}
